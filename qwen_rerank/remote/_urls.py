"""Where requests go: the rerank endpoint of a base URL, and round-robin over replicas.

- [`rerank_url`][qwen_rerank.remote._urls.rerank_url]: a base URL as its rerank endpoint.
- [`Replicas`][qwen_rerank.remote._urls.Replicas]: round-robin over rerank URLs, skipping a
  replica that refused a connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote._dialects import DIALECTS, Dialect

__all__ = ["OTHER_ENDPOINTS", "REPLICA_COOLDOWN_S", "RERANK_PATHS", "Replicas", "rerank_url"]

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
OTHER_ENDPOINTS = (
    "/score",
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/pooling",
    "/classify",
)
# How long a replica that refused a connection is skipped by new sub-requests.
REPLICA_COOLDOWN_S = 5.0


def rerank_url(base_url: Any, dialect: Dialect = DIALECTS["vllm"], model: str | None = None) -> str:
    """``base_url`` as the rerank endpoint URL.

    ``http://host:8000`` and ``.../v1`` get the dialect's default path (a hosted API's,
    with ``model`` in it where the provider names the model in the path); a URL that
    already ends in ``/rerank``, ``/v1/rerank``, ``/v2/rerank`` or that path is kept. A
    URL that ends in another endpoint (``/v1/score``...) is an error naming the rerank paths.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise InvalidInputError(f"base_url must be a URL such as 'http://localhost:8000', got {base_url!r}.")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise InvalidInputError(f"base_url {display_url(base_url)!r} is not a valid URL: {exc}.") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInputError(
            f"base_url must start with http:// or https:// and name a host, got {display_url(base_url)!r}; "
            "for example 'http://localhost:8000'."
        )
    if url.query:
        raise InvalidInputError(
            f"base_url {_without_query(base_url)!r} carries a query string (?...), which would reach "
            "spans, logs and messages: it often holds a key. Pass a key as api_key=, or give the "
            "query to your own client: http_client=httpx.Client(params={...}) (and "
            "async_http_client=httpx.AsyncClient(params={...})), whose params go on every request."
        )
    path = url.path.rstrip("/")
    default_path = dialect.default_path.replace("{model}", model or "")
    if any(path.endswith(tail) for tail in (*RERANK_PATHS, default_path)):
        return str(url.copy_with(path=path, query=None, fragment=None))
    for tail in OTHER_ENDPOINTS:
        if path.endswith(tail):
            raise InvalidInputError(
                f"base_url {display_url(base_url)!r} ends in {tail}, which is not a rerank endpoint. "
                "Give the server's root (http://host:8000) or its rerank path: one of "
                f"{', '.join(RERANK_PATHS)}."
            )
    if dialect.hosted is not None and default_path.startswith(path + "/"):
        path = ""  # the start of the provider's own path, as its SDKs take it (".../api/v1")
    path = path.removesuffix("/v1")
    return str(url.copy_with(path=path + default_path, query=None, fragment=None))


def _without_query(base_url: str) -> str:
    """``base_url`` as shown, without its query string (nor any part of it)."""
    return display_url(base_url.split("?", 1)[0])


class Replicas:
    """Round-robin over the rerank URLs; a replica that refused a connection sits out a while.

    Thread-safe; shared by every call of one reranker, sync or async.
    """

    def __init__(self, urls: Sequence[str], cooldown: float = REPLICA_COOLDOWN_S) -> None:
        self.urls = list(urls)
        self._cooldown = cooldown
        self._down_until = [0.0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, exclude: Sequence[int] = ()) -> int:
        """The next replica in turn that is up and not in ``exclude``; else the next not excluded."""
        with self._lock:
            now = time.monotonic()
            n = len(self.urls)
            candidates = [(self._next + k) % n for k in range(n)]
            fresh = [i for i in candidates if i not in exclude] or candidates
            up = [i for i in fresh if self._down_until[i] <= now]
            chosen = (up or fresh)[0]
            self._next = (chosen + 1) % n
            return chosen

    def mark_down(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + self._cooldown

    def mark_up(self, index: int) -> None:
        if self._down_until[index]:
            with self._lock:
                self._down_until[index] = 0.0
