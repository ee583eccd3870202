"""The local backend: Qwen3-Reranker in this process, with transformers and PyTorch.

Needs ``pip install "qwen-rerank[local]"``. Importing this package imports torch.
"""

from __future__ import annotations

from qwen_rerank.exceptions import MissingDependencyError

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        f"LocalReranker needs torch and transformers ({exc.name} is missing). "
        'Install them with: pip install "qwen-rerank[local]"'
    ) from exc

from qwen_rerank.local._devices import default_batch_tokens, resolve_device, resolve_dtype
from qwen_rerank.local._loading import check_model_source, quiet_progress_bars
from qwen_rerank.local._reranker import LocalReranker

__all__ = [
    "LocalReranker",
    "check_model_source",
    "default_batch_tokens",
    "quiet_progress_bars",
    "resolve_device",
    "resolve_dtype",
]
