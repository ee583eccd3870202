"""The remote backend: rerank servers (vLLM, SGLang, Cohere-style) over HTTP, with httpx.

Importing it never imports torch.
"""

from __future__ import annotations

from qwen_rerank.remote._dialects import DIALECTS, ApiName, Dialect, Usage
from qwen_rerank.remote._probe import ServerAnswer, server_get
from qwen_rerank.remote._reranker import API_KEY_ENV, VLLMReranker

API_NAMES: tuple[str, ...] = tuple(DIALECTS)
"""The wire formats `VLLMReranker(api=...)` speaks."""

__all__ = [
    "API_KEY_ENV",
    "API_NAMES",
    "DIALECTS",
    "ApiName",
    "Dialect",
    "ServerAnswer",
    "Usage",
    "VLLMReranker",
    "server_get",
]
