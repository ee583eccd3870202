"""The remote backend: a client for vLLM's ``/v1/rerank`` endpoint, sync and async, with httpx.

It imports neither torch nor transformers (unless ``tokenizer=`` asks for one).
Request building, splitting, retries and response checks live in
:mod:`qwen_rerank._http` as pure code; this module only sends and sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from qwen_rerank import _http
from qwen_rerank._chunking import LongDocumentsMode
from qwen_rerank._imports import require
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, ModelLoadError
from qwen_rerank.prompt import PromptTokenizer, escape_control_tokens, split_prompts

__all__ = ["API_KEY_ENV", "VLLMReranker"]

API_KEY_ENV = "QWEN_RERANK_API_KEY"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SubRequest:
    start: int
    end: int
    body: bytes


class VLLMReranker(Reranker):
    """Qwen3-Reranker served by vLLM, reached over HTTP at ``/v1/rerank``.

    Scores equal :class:`~qwen_rerank.LocalReranker`'s on the same checkpoint:
    with ``template="client"`` the client wraps query and documents in the
    model card's prompt itself, and vLLM scores exactly that prompt. Results are
    mapped back by ``index``; a response that misses, repeats or invents an index,
    or carries a score that is not a probability, raises
    :class:`~qwen_rerank.MalformedResponseError`. A call returns every score or
    raises; it never returns part of them.

    Args:
        base_url: The server, as ``http://host:8000`` or ``http://host:8000/v1``;
            or a list of replicas. Sub-requests go round-robin over the replicas,
            and a replica that refuses connections is skipped for a few seconds
            while the others take its share.
        model: The model name to send; ``None`` omits it, so the server uses the
            one it serves.
        api_key: Sent as ``Authorization: Bearer ...``. ``None`` reads the
            ``QWEN_RERANK_API_KEY`` environment variable; when that is unset too,
            no header is sent. Never shown in repr, logs or error messages.
        template: ``"client"`` for a server started without ``--chat-template``
            (the client builds the prompt), ``"server"`` for one started with
            ``--chat-template qwen3_reranker.jinja`` (the client sends the raw
            query and documents plus ``instruction``).
        instruction: Default task instruction; see ``DEFAULT_INSTRUCTION``.
        max_documents_per_request: Longer lists are split into this many
            documents or fewer per request, of near-equal sizes.
        max_concurrency: At most this many sub-requests of one call are in flight.
        timeout: Seconds to wait for the server (an ``httpx.Timeout`` for finer
            control). With a number, connecting gets at most 5 s of it, so a dead
            replica is left quickly.
        max_retries: Retries after the first attempt, on connection failures,
            connections dropped before a response, and HTTP 429, 502, 503 and 504.
            Other errors, timeouts included, are raised at once.
        max_tokens_per_doc: ``template="server"`` only: passed to vLLM, which
            cuts each document to this many tokens before applying the template.
        tokenizer: Hub id or local folder of the model's tokenizer, loaded with
            transformers (``pip install "qwen-rerank[local]"``). With it, long
            documents are cut on the client, by the same rule as LocalReranker,
            so that every prompt fits in ``max_length`` and the suffix is never
            cut. Without it documents are sent whole (see the README).
        max_length: Most tokens one prompt may take; keep it within the server's
            ``--max-model-len``. Used with ``tokenizer``.
        http_client: An ``httpx.Client`` to use instead of the reranker's own.
            Its settings (timeout, limits, proxies) apply; it is not closed by
            :meth:`close`.
        async_http_client: The same for async calls.
        retry_backoff: Base of the exponential backoff between retries, seconds.
        max_retry_wait: Longest wait before a retry, ``Retry-After`` included:
            a server asking for longer gets its error raised instead.
        long_documents: ``"truncate"`` (the default) or ``"chunk"``, as for
            LocalReranker. ``"chunk"`` needs ``tokenizer=`` to place windows
            exactly; the windows go out as documents of the call's requests
            (split like any documents) and each document keeps its best score.
        chunk_tokens, chunk_overlap: Window size and overlap in chunk mode.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        template: Literal["client", "server"] = "client",
        instruction: str | None = None,
        max_documents_per_request: int = 128,
        max_concurrency: int = 8,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 3,
        max_tokens_per_doc: int | None = None,
        tokenizer: str | None = None,
        max_length: int = 8192,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        retry_backoff: float = 0.5,
        max_retry_wait: float = 30.0,
        long_documents: LongDocumentsMode = "truncate",
        chunk_tokens: int | None = None,
        chunk_overlap: int | None = None,
    ) -> None:
        super().__init__(
            instruction=instruction,
            long_documents=long_documents,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        if long_documents == "chunk" and tokenizer is None:
            raise InvalidInputError(
                "long_documents='chunk' needs tokenizer= (the model's hub id or local folder) to cut "
                "windows on token boundaries; pass it, or use long_documents='truncate'."
            )
        urls = [base_url] if isinstance(base_url, str) else base_url
        if not isinstance(urls, Sequence) or not urls:
            raise InvalidInputError(f"base_url must be a URL or a non-empty list of URLs, got {base_url!r}.")
        self.base_urls = [_http.display_url(u) if isinstance(u, str) else u for u in urls]
        self._replicas = _http.Replicas([_http.rerank_url(u) for u in urls])
        if model is not None and (not isinstance(model, str) or not model):
            raise InvalidInputError(f"model must be a non-empty str or None, got {model!r}.")
        self.model = model
        if template not in ("client", "server"):
            raise InvalidInputError(f"template must be 'client' or 'server', got {template!r}.")
        self.template: Literal["client", "server"] = template
        self.max_documents_per_request = check_positive_int(
            "max_documents_per_request", max_documents_per_request
        )
        self.max_concurrency = check_positive_int("max_concurrency", max_concurrency)
        self.max_length = check_positive_int("max_length", max_length)
        if max_tokens_per_doc is not None:
            check_positive_int("max_tokens_per_doc", max_tokens_per_doc)
            if template == "client":
                raise InvalidInputError(
                    "max_tokens_per_doc is applied by the server's template, so it needs template='server'. "
                    "With template='client', pass tokenizer= and max_length= to truncate on the client."
                )
        self.max_tokens_per_doc = max_tokens_per_doc
        self._policy = _http.RetryPolicy(
            max_retries=_check_count("max_retries", max_retries),
            backoff=_check_seconds("retry_backoff", retry_backoff),
            max_wait=_check_seconds("max_retry_wait", max_retry_wait),
        )
        self._timeout = _make_timeout(timeout)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if key is not None and not isinstance(key, str):
            raise InvalidInputError(f"api_key must be a str or None, got {type(key).__name__}.")
        self._api_key = key or None
        self._headers = {"Content-Type": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self.tokenizer_name = tokenizer
        self._prompt_tokenizer = _load_tokenizer(tokenizer) if tokenizer is not None else None
        if self._prompt_tokenizer is not None:
            self._prompt_tokenizer.check_max_length(self.max_length)
        self._warned_long = False

        self._user_client = http_client
        self._user_async_client = async_http_client
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        connections = max(64, self.max_concurrency)
        self._limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    def __repr__(self) -> str:
        urls = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        key = ", api_key='***'" if self._api_key else ""
        return (
            f"VLLMReranker(base_url={urls!r}, model={self.model!r}, template={self.template!r}"
            f"{key}, tokenizer={self.tokenizer_name!r}, max_length={self.max_length})"
        )

    # -- what to send (no I/O) ------------------------------------------------------------
    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        pt = self._prompt_tokenizer
        return None if pt is None else (pt, self.max_length)

    def _sub_requests(self, query: str, documents: list[str], instruction: str) -> list[_SubRequest]:
        query, instruction = escape_control_tokens(query), escape_control_tokens(instruction)
        documents = [escape_control_tokens(doc) for doc in documents]
        pt = self._prompt_tokenizer
        fields: dict[str, Any] = {}
        if self.template == "client":
            if pt is not None:
                query_text, texts = pt.split_pairs(query, documents, instruction, self.max_length)
            else:
                query_text, texts = split_prompts(query, documents, instruction)
                self._warn_if_long(query_text, texts)
        else:
            query_text = query
            texts = pt.truncate_documents(query, documents, instruction, self.max_length) if pt else documents
            fields = {"instruction": instruction, "chat_template_kwargs": {"instruction": instruction}}
            if self.max_tokens_per_doc is not None:
                fields["max_tokens_per_doc"] = self.max_tokens_per_doc
        return [
            _SubRequest(start, end, _http.encode_body(query_text, texts[start:end], self.model, fields))
            for start, end in _http.chunk_bounds(len(texts), self.max_documents_per_request)
        ]

    def _warn_if_long(self, query_text: str, texts: list[str]) -> None:
        if self._warned_long:
            return
        limit = self.max_length - len(query_text.encode("utf-8"))
        # A token is at least one byte: a text of no more bytes than the limit surely fits.
        if any(len(t) * 4 > limit and len(t.encode("utf-8")) > limit for t in texts):
            self._warned_long = True
            logger.warning(
                "A document may exceed max_length=%d tokens. Without tokenizer= it is sent whole: the "
                "server scores all of it, or rejects it (HTTP 400) if it is longer than its "
                "--max-model-len. Pass tokenizer= to truncate on the client like LocalReranker.",
                self.max_length,
            )

    def _flow(self, expected: int) -> _http.Flow:
        return _http.request_flow(
            self._replicas, self._policy, expected, redact=self._redact, log=logger.info
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    @staticmethod
    def _merge(count: int, subs: Sequence[_SubRequest], parts: Sequence[list[float]]) -> list[float]:
        scores = [0.0] * count
        for sub, part in zip(subs, parts, strict=True):
            scores[sub.start : sub.end] = part
        return scores

    # -- sync -------------------------------------------------------------------------------
    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        subs = self._sub_requests(query, documents, instruction)
        if len(subs) == 1:
            return self._send(subs[0])
        pool = self._pool()
        futures = [pool.submit(self._send, sub) for sub in subs]
        try:
            parts = [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()
        return self._merge(len(documents), subs, parts)

    def _send(self, sub: _SubRequest) -> list[float]:
        client = self._sync_client()
        flow = self._flow(sub.end - sub.start)
        try:
            action = next(flow)
            while True:
                if isinstance(action, _http.Sleep):
                    time.sleep(action.seconds)
                    action = flow.send(None)
                    continue
                outcome: _http.Outcome
                try:
                    response = client.post(action.url, content=sub.body, headers=self._headers)
                    outcome = _http.Reply.of(response)
                except httpx.HTTPError as exc:
                    outcome = exc
                action = flow.send(outcome)
        except StopIteration as done:
            scores: list[float] = done.value
            return scores

    def _sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self._timeout, limits=self._limits)
                client = self._client
        return client

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="qwen-rerank"
                )
            return self._executor

    # -- async ------------------------------------------------------------------------------
    async def _ascore(self, query: str, documents: list[str], instruction: str) -> list[float]:
        subs = self._sub_requests(query, documents, instruction)
        if len(subs) == 1:
            return await self._asend(subs[0])
        gate = asyncio.Semaphore(self.max_concurrency)

        async def gated(sub: _SubRequest) -> list[float]:
            async with gate:
                return await self._asend(sub)

        tasks = [asyncio.ensure_future(gated(sub)) for sub in subs]
        try:
            parts = await asyncio.gather(*tasks)
        finally:
            # One failure fails the call: stop the rest, and collect their outcomes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._merge(len(documents), subs, parts)

    async def _asend(self, sub: _SubRequest) -> list[float]:
        client = self._aclient()
        flow = self._flow(sub.end - sub.start)
        try:
            action = next(flow)
            while True:
                if isinstance(action, _http.Sleep):
                    await asyncio.sleep(action.seconds)
                    action = flow.send(None)
                    continue
                outcome: _http.Outcome
                try:
                    response = await client.post(action.url, content=sub.body, headers=self._headers)
                    outcome = _http.Reply.of(response)
                except httpx.HTTPError as exc:
                    outcome = exc
                action = flow.send(outcome)
        except StopIteration as done:
            scores: list[float] = done.value
            return scores

    def _aclient(self) -> httpx.AsyncClient:
        if self._user_async_client is not None:
            return self._user_async_client
        loop = asyncio.get_running_loop()
        # An AsyncClient's connections belong to the event loop that opened them.
        if self._async_client is None or self._async_loop is not loop:
            self._async_client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits)
            self._async_loop = loop
        return self._async_client

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections and threads this reranker opened (not injected clients).

        The reranker stays usable: a later call opens new connections.
        """
        with self._lock:
            client, self._client = self._client, None
            executor, self._executor = self._executor, None
        if client is not None:
            client.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        # An async client can only be closed from a running loop (see aclose); drop it here.
        self._async_client, self._async_loop = None, None

    async def aclose(self) -> None:
        """Async :meth:`close`: also closes the async connections opened on this event loop."""
        client, loop = self._async_client, self._async_loop
        self._async_client, self._async_loop = None, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()
        self.close()


def _make_timeout(timeout: Any) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    seconds = _check_seconds("timeout", timeout)
    if seconds <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise InvalidInputError(f"{name} must be a finite number of seconds >= 0, got {value!r}.")
    return float(value)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be an int >= 0, got {value!r}.")
    return value


def _load_tokenizer(name: Any) -> PromptTokenizer:
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"tokenizer must be a hub id or a local folder, got {name!r}.")
    transformers = require("transformers", "local")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load tokenizer {name!r}: {exc}. Pass the model's hub id or a local folder "
            "holding its tokenizer files."
        ) from exc
    return PromptTokenizer(tokenizer)
