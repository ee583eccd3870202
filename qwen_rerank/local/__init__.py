"""The local backend: Qwen3-Reranker in this process, with transformers and PyTorch.

Needs ``pip install "qwen-rerank[local]"``. Importing this package imports torch.
"""

from __future__ import annotations

from qwen_rerank.local._reranker import (
    LocalReranker,
    check_model_source,
    default_batch_tokens,
    quiet_progress_bars,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "LocalReranker",
    "check_model_source",
    "default_batch_tokens",
    "quiet_progress_bars",
    "resolve_device",
    "resolve_dtype",
]
