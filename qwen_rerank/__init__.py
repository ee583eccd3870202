"""qwen-rerank: Qwen3-Reranker for RAG pipelines, run locally or against vLLM.

```python
from qwen_rerank import LocalReranker
reranker = LocalReranker("Qwen/Qwen3-Reranker-0.6B")
reranker.rerank("what is a panda?", ["The giant panda is a bear.", "Paris is in France."])
```

``LocalReranker`` is imported on first use, so ``import qwen_rerank`` and the
remote backend never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qwen_rerank._fallback import fallback_counts, reset_fallback_counts
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    InvalidScoreError,
    MalformedResponseError,
    MissingDependencyError,
    ModelLoadError,
    OutOfMemoryError,
    QwenRerankError,
    QwenRerankWarning,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
)
from qwen_rerank.factory import create_reranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, DEFAULT_MODEL
from qwen_rerank.remote import RemoteReranker, VLLMReranker
from qwen_rerank.results import RerankResult

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "APIStatusError",
    "InvalidInputError",
    "InvalidScoreError",
    "LocalReranker",
    "MalformedResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "OutOfMemoryError",
    "QwenRerankError",
    "QwenRerankWarning",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteReranker",
    "RemoteTimeoutError",
    "RerankResult",
    "Reranker",
    "VLLMReranker",
    "create_reranker",
    "fallback_counts",
    "reset_fallback_counts",
]

# The one place the version is written: pyproject.toml reads it from here at build time.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from qwen_rerank.local import LocalReranker


def __getattr__(name: str) -> Any:
    if name == "LocalReranker":
        from qwen_rerank.local import LocalReranker

        return LocalReranker
    raise AttributeError(f"module 'qwen_rerank' has no attribute {name!r}")
