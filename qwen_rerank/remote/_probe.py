"""One GET or POST at a rerank server's root (``/props``, ``/tokenize``, ...), read as a reply is.

`server_get` and `server_post` are what `qwen-rerank check` asks a server besides reranking:
which server it is, how many slots it has, which prompt its template renders. Each goes out
over the reranker's own connections with its headers (API key or basic auth), and its reply
is read by the same [`BodyReader`][qwen_rerank.remote._replies.BodyReader] as a rerank reply,
under the same caps: ``max_response_bytes`` (or the most a rerank reply to one document
takes) counted after decompression, so a small gzip bomb costs no more memory than that;
and within one attempt's ``timeout`` (and the ``deadline``, if shorter), held on every
socket operation of the sync client, so a server that trickles its answer cannot hold it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from qwen_rerank.exceptions import MalformedResponseError
from qwen_rerank.remote._replies import BodyReader, reply_limit
from qwen_rerank.remote._reranker import RemoteReranker
from qwen_rerank.remote._transport import attempt_ends

__all__ = ["ServerAnswer", "server_get", "server_post"]


@dataclass(frozen=True)
class ServerAnswer:
    """What a server answered to a GET: its status, content type and (capped, decoded) body."""

    status: int
    content_type: str | None
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON for a 200 answer; ``None`` for any other status or a body not JSON."""
        if self.status != 200:
            return None
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError):
            return None

    @property
    def is_page(self) -> bool:
        """Whether the body is a web page (HTML), as a login page or a proxy's page is."""
        return "html" in (self.content_type or "").lower() or self.content[:64].lstrip()[:1] == b"<"


def server_get(reranker: RemoteReranker, path: str) -> ServerAnswer | None:
    """``GET path`` at the root of ``reranker``'s (first) server, under a rerank reply's caps and time.

    Args:
        reranker: Whose server, connections, headers, ``timeout``, ``deadline`` and
            ``max_response_bytes`` to use.
        path: The path at the server's root, e.g. ``"/props"``.

    Returns:
        The answer, whatever its status; ``None`` when there is none: the server could not
        be reached, broke off, sent more than the cap, or took longer than one attempt may.
    """
    return _ask(reranker, "GET", path, None)


def server_post(reranker: RemoteReranker, path: str, body: Any) -> ServerAnswer | None:
    """``POST path`` with the JSON ``body``, as `server_get` sends a GET (same caps, time and headers)."""
    return _ask(reranker, "POST", path, body)


def _ask(reranker: RemoteReranker, method: str, path: str, body: Any) -> ServerAnswer | None:
    endpoints, timing = reranker._endpoints, reranker._timing
    url = httpx.URL(endpoints.base_urls[0]).copy_with(path=path, query=None, fragment=None)
    sent = next(iter(endpoints.headers.values()))
    headers = {
        name: value for name, value in sent.items() if body is not None or name.lower() != "content-type"
    }
    budget = min((s for s in (timing.attempt, timing.deadline) if s is not None), default=None)
    limit = reranker.max_response_bytes or reply_limit(b"", 1)
    started = time.monotonic()
    try:
        with (
            reranker._connections.sync_client() as client,
            attempt_ends(None if budget is None else started + budget),
        ):
            timeout = client.timeout if budget is None else httpx.Timeout(budget)
            response = client.send(
                client.build_request(method, url, headers=headers, timeout=timeout, json=body), stream=True
            )
            try:
                reader = BodyReader(limit, response.headers.get("content-encoding"), str(url))
                for chunk in response.iter_raw():
                    reader.feed(chunk)
                    if budget is not None and time.monotonic() - started > budget:
                        return None
                return ServerAnswer(
                    response.status_code, response.headers.get("content-type"), reader.content()
                )
            finally:
                response.close()
    except (httpx.HTTPError, MalformedResponseError):
        return None
