"""The remote backend: rerank servers (vLLM, SGLang, Cohere-style) and hosted APIs over HTTP, with httpx.

Importing it never imports torch.
"""

from __future__ import annotations

from qwen_rerank.remote._dialects import DIALECTS, ApiName, Dialect, Usage
from qwen_rerank.remote._probe import ServerAnswer, server_get, server_post
from qwen_rerank.remote._providers import PROVIDERS
from qwen_rerank.remote._reranker import API_KEY_ENV, RemoteReranker, VLLMReranker
from qwen_rerank.remote._splitting import RequestLimits

API_NAMES: tuple[str, ...] = tuple(DIALECTS)
"""The wire formats `RemoteReranker(api=...)` speaks."""

HOSTED_API_NAMES: tuple[str, ...] = tuple(PROVIDERS)
"""The hosted APIs among them: they need no ``base_url``, and read the provider's key variable."""

__all__ = [
    "API_KEY_ENV",
    "API_NAMES",
    "DIALECTS",
    "HOSTED_API_NAMES",
    "ApiName",
    "Dialect",
    "RemoteReranker",
    "RequestLimits",
    "ServerAnswer",
    "Usage",
    "VLLMReranker",
    "server_get",
    "server_post",
]
