"""Convert a Qwen3-Reranker checkpoint to its one-logit ``-seq-cls`` form.

The ``-seq-cls`` checkpoints that TEI, Infinity and sentence-transformers serve
are ``Qwen3ForSequenceClassification`` models with a single output: their
classifier row is the ``yes`` row of the causal LM's vocabulary head minus its
``no`` row. The logit at a prompt's last token is then
``logit_yes - logit_no``, and its sigmoid equals the model card's
``softmax([logit_no, logit_yes])[1]``.

Example:
    ```python
    from qwen_rerank import LocalReranker
    from qwen_rerank.testing import convert_to_seq_cls, make_tiny_reranker

    seq_cls = convert_to_seq_cls(make_tiny_reranker(), "tiny-seq-cls")
    LocalReranker(seq_cls).score("query", ["a document"])
    ```
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.exceptions import InvalidInputError, ModelLoadError
from qwen_rerank.prompt import NO_TOKEN, YES_TOKEN

__all__ = ["convert_to_seq_cls"]

# Files of a checkpoint folder that describe the model itself; everything else (the tokenizer's
# files, a README, a chat template) is copied to the converted folder unchanged.
_MODEL_FILES = ("config.json", "generation_config.json", "qwen-rerank-tiny.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json", ".pt", ".pth")


def convert_to_seq_cls(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write the ``Qwen3ForSequenceClassification`` form of the causal-LM reranker in ``src`` to ``dst``.

    The new checkpoint keeps the transformer of ``src`` and replaces its
    vocabulary head by one classifier row, ``head[yes] - head[no]`` (computed
    in float32, stored in the checkpoint's dtype). Its ``pad_token_id`` is set
    (from the tokenizer when the config has none), so servers that batch with
    padding find each prompt's last real token. The tokenizer files of ``src``
    are copied byte for byte, so servers with an older transformers read them
    as they read the original checkpoint's.

    Args:
        src: A local folder holding a Qwen3-Reranker causal-LM checkpoint (such
            as ``Qwen/Qwen3-Reranker-0.6B`` downloaded with ``hf download``, or
            [`make_tiny_reranker`][qwen_rerank.testing.make_tiny_reranker]'s).
        dst: The folder to write; created if missing. Files of the same names
            in it are replaced.

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        InvalidInputError: ``src`` is not a folder, or ``dst`` is ``src``.
        ModelLoadError: ``src`` does not load as a causal LM with a vocabulary
            head and a tokenizer that spells ``yes`` and ``no`` as one token each.

    Example:
        ```python
        from qwen_rerank.testing import convert_to_seq_cls

        convert_to_seq_cls("Qwen3-Reranker-0.6B", "Qwen3-Reranker-0.6B-seq-cls")
        ```
    """
    source, target = Path(src).expanduser(), Path(dst).expanduser()
    if not source.is_dir():
        raise InvalidInputError(f"src must be a local checkpoint folder, got {os.fspath(src)!r}.")
    if target.exists() and target.resolve() == source.resolve():
        raise InvalidInputError(f"dst must differ from src ({os.fspath(src)!r}); pass a new folder.")
    torch = require("torch", "local")
    transformers = require("transformers", "local")
    from qwen_rerank.local import quiet_progress_bars

    with quiet_progress_bars():
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            causal = transformers.AutoModelForCausalLM.from_pretrained(source, dtype="auto")
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load {os.fspath(src)!r} as a causal-LM reranker: {exc}. Pass the folder of a "
                "Qwen3-Reranker checkpoint (config.json, weights and tokenizer files)."
            ) from exc
        seq_cls = _seq_cls_model(causal, tokenizer, torch, transformers)
        target.mkdir(parents=True, exist_ok=True)
        seq_cls.save_pretrained(target)
    _add_legacy_rope_theta(target / "config.json")
    for item in source.iterdir():
        if item.is_file() and item.name not in _MODEL_FILES and not item.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(item, target / item.name)
    return target


def _seq_cls_model(causal: Any, tokenizer: Any, torch: Any, transformers: Any) -> Any:
    """A one-label sequence classifier sharing ``causal``'s transformer, its row ``head[yes] - head[no]``."""
    head = causal.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ModelLoadError(f"{type(causal).__name__} has no linear vocabulary head to take rows from.")
    yes_id, no_id = (_single_token(tokenizer, token) for token in (YES_TOKEN, NO_TOKEN))
    config = causal.config.__class__.from_dict(causal.config.to_dict())
    config.num_labels = 1
    config.architectures = [type(causal).__name__.replace("ForCausalLM", "ForSequenceClassification")]
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    seq_cls = transformers.AutoModelForSequenceClassification.from_config(config, dtype=head.weight.dtype)
    seq_cls.base_model.load_state_dict(causal.base_model.state_dict())
    with torch.no_grad():
        row = head.weight[yes_id].float() - head.weight[no_id].float()
        seq_cls.score.weight.copy_(row.unsqueeze(0).to(head.weight.dtype))
    return seq_cls


def _single_token(tokenizer: Any, text: str) -> int:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ModelLoadError(f"The tokenizer spells {text!r} as {len(ids)} tokens; a reranker needs one.")
    return ids[0]


def _add_legacy_rope_theta(config_file: Path) -> None:
    """Write ``rope_theta`` at the top of ``config_file`` too, where servers on older readers look.

    transformers 5 keeps it inside ``rope_parameters``; transformers 4 (Infinity)
    and TEI read only the top-level key, and without it fall back to 10,000,
    which silently changes every score.
    """
    config = json.loads(config_file.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
