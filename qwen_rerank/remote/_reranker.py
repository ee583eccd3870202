"""The remote backend: a client for rerank servers (vLLM, SGLang, Cohere-shaped), sync and async, with httpx.

It imports neither torch nor transformers (unless ``tokenizer=`` asks for one).
Request building, splitting, retries and response checks live in `qwen_rerank.remote._flow`
and `qwen_rerank.remote._dialects` as pure code, connection lifecycles in
`qwen_rerank.remote._clients`, secrets in `qwen_rerank._secrets`; this module only
sends, reads and sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

import qwen_rerank.remote._flow as _http
from qwen_rerank import _secrets
from qwen_rerank._chunking import LongDocumentsMode
from qwen_rerank._imports import require
from qwen_rerank._many import Progress, Request
from qwen_rerank._tracing import note_attempt
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, MalformedResponseError, ModelLoadError
from qwen_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    PromptTokenizer,
    escape_control_tokens,
    split_for_stripping_server,
    split_prompts,
)
from qwen_rerank.remote._clients import LoopClients, Shared
from qwen_rerank.remote._dialects import DIALECTS, ApiName, Dialect, Usage, break_placeholders, encode_body

__all__ = ["API_KEY_ENV", "Usage", "VLLMReranker"]

API_KEY_ENV = "QWEN_RERANK_API_KEY"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SubRequest:
    start: int
    end: int
    body: bytes


class VLLMReranker(Reranker):
    """Qwen3-Reranker served by vLLM (or SGLang, or a Cohere-shaped proxy), reached over HTTP.

    Scores equal [`LocalReranker`][qwen_rerank.LocalReranker]'s on the same checkpoint:
    with ``template="client"`` the client wraps query and documents in the
    model card's prompt itself, and vLLM scores exactly that prompt. Results are
    mapped back by ``index``; a response that misses, repeats or invents an index,
    or carries a score that is not a probability, raises
    [`MalformedResponseError`][qwen_rerank.exceptions.MalformedResponseError]. A call returns every score or
    raises; it never returns part of them.

    Args:
        base_url: The server, as ``http://host:8000``, ``http://host:8000/v1``, or
            a full rerank path (``/rerank``, ``/v1/rerank``, ``/v2/rerank``); or a
            list of replicas. Sub-requests go round-robin over the replicas, and a
            replica that refuses connections is skipped for a few seconds while the
            others take its share. ``http://user:password@host`` sends the
            credentials as HTTP basic auth (for that URL, instead of ``api_key``);
            the password is shown nowhere.
        model: The model name to send; ``None`` omits it, so the server uses the
            one it serves.
        api_key: Sent as ``Authorization: Bearer ...``. ``None`` reads the
            ``QWEN_RERANK_API_KEY`` environment variable; when that is unset too,
            no header is sent. Never shown in repr, logs or error messages, not
            even in part. A key holding whitespace or non-ASCII characters is an
            [`InvalidInputError`][qwen_rerank.exceptions.InvalidInputError].
        template: ``"client"`` for a server started without ``--chat-template``
            (the client builds the prompt), ``"server"`` for one started with
            ``--chat-template qwen3_reranker.jinja`` (the client sends the raw
            query and documents plus ``instruction``). ``None`` (the default)
            picks the dialect's: ``"server"`` for ``api="llamacpp"``, whose
            server always applies its own template, else ``"client"``.
        instruction: Default task instruction; see ``DEFAULT_INSTRUCTION``.
        max_documents_per_request: Longer lists are split into this many
            documents or fewer per request, of near-equal sizes.
        max_concurrency: At most this many sub-requests of one call are in flight.
        timeout: Seconds one attempt may take as a whole, from connecting to the
            last byte of the body, so a server that trickles its answer cannot
            hold a call. Connecting gets at most 5 s of it, so a dead replica is
            left quickly. An ``httpx.Timeout`` sets each phase instead; the attempt
            then gets the sum of its phases. (Sync calls notice a trickling body
            between two received chunks, so they may overrun by one inter-chunk gap.)
        deadline: Seconds the whole call may take: every sub-request, retry and
            backoff sleep included. ``"auto"`` (the default) is the worst case
            that ``timeout`` and ``max_retries`` allow: ``(max_retries + replicas)
            * timeout + max_retries * max_retry_wait``. ``None`` sets none.
        max_retries: Retries after the first attempt, on connection failures,
            connections dropped before a response, and HTTP 429, 502, 503 and 504.
            Other errors, timeouts and bodies that break off included, are raised
            at once.
        api: The server's wire format: ``"vllm"`` (default), ``"sglang"`` (SGLang's
            ``/v1/rerank``) or ``"cohere"`` (``/v2/rerank`` as LiteLLM's proxy and
            Infinity serve it; needs ``model``), ``"tei"`` (Text Embeddings Inference's
            ``/rerank``) or ``"infinity"`` (Infinity's ``/rerank``), which serve the
            ``-seq-cls`` conversion and take ``template="client"`` only (see
            docs/tei-infinity.md), or ``"llamacpp"`` (llama.cpp's
            ``llama-server --reranking``: it applies the GGUF's template with
            the default instruction, so a different instruction raises
            [`InvalidInputError`][qwen_rerank.InvalidInputError]). See docs/remote-servers.md
            and docs/llama-cpp.md.
        max_response_bytes: Most bytes of a reply that are read, counted after
            decompression. ``None`` (the default) allows the largest valid reply
            to each request (3 x its body, plus 2 KiB per document and 64 KiB);
            past it the read stops with
            [`MalformedResponseError`][qwen_rerank.exceptions.MalformedResponseError].
        max_tokens_per_doc: ``template="server"`` and ``api="vllm"`` only: passed to vLLM, which
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
            `close`.
        async_http_client: The same for async calls.
        retry_backoff: Base of the exponential backoff between retries, seconds.
        max_retry_wait: Longest wait before a retry, ``Retry-After`` included:
            a server asking for longer gets its error raised instead.
        long_documents: ``"truncate"`` (the default) or ``"chunk"``, as for
            LocalReranker. ``"chunk"`` needs ``tokenizer=`` to place windows
            exactly; the windows go out as documents of the call's requests
            (split like any documents) and each document keeps its best score.
        chunk_tokens: Window size in chunk mode, in tokens.
        chunk_overlap: Tokens shared by neighbouring windows in chunk mode.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        template: Literal["client", "server"] | None = None,
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
        deadline: float | Literal["auto"] | None = "auto",
        api: ApiName = "vllm",
        max_response_bytes: int | None = None,
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
        if api not in DIALECTS:
            raise InvalidInputError(f"api must be one of {sorted(DIALECTS)}, got {api!r}.")
        self.api: ApiName = api
        self._dialect = DIALECTS[api]
        urls = [base_url] if isinstance(base_url, str) else base_url
        if not isinstance(urls, Sequence) or not urls:
            raise InvalidInputError(
                f"base_url must be a URL or a non-empty list of URLs, got {type(base_url).__name__}."
            )
        api_key = _secrets.check_api_key(api_key if api_key is not None else os.environ.get(API_KEY_ENV))
        self._api_key = api_key
        self.base_urls, rerank_urls, self._headers, secrets = self._endpoints(urls, api_key)
        self._redact = _secrets.Redactor(secrets)
        _secrets.guard_logs(self._redact)
        self._replicas = _http.Replicas(rerank_urls)
        if model is not None and (not isinstance(model, str) or not model):
            raise InvalidInputError(f"model must be a non-empty str or None, got {model!r}.")
        if model is None and self._dialect.needs_model:
            raise InvalidInputError(f"api={api!r} needs model=, the name the server serves the reranker as.")
        self.model = model
        self.template: Literal["client", "server"] = _check_template(self._dialect, template)
        _check_fixed_instruction(self._dialect, self.instruction)
        self.max_documents_per_request = check_positive_int(
            "max_documents_per_request", max_documents_per_request
        )
        self.max_concurrency = check_positive_int("max_concurrency", max_concurrency)
        self.max_length = check_positive_int("max_length", max_length)
        if max_tokens_per_doc is not None:
            check_positive_int("max_tokens_per_doc", max_tokens_per_doc)
            if not self._dialect.takes_max_tokens_per_doc:
                raise InvalidInputError(f"max_tokens_per_doc is a vLLM field; api={api!r} has none.")
            if self.template == "client":
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
        self.timeout = _attempt_budget(self._timeout)
        self.deadline = _make_deadline(deadline, self.timeout, self._policy, len(urls))
        if max_response_bytes is not None:
            check_positive_int("max_response_bytes", max_response_bytes)
        self.max_response_bytes = max_response_bytes
        self.tokenizer_name = tokenizer
        self._prompt_tokenizer = _load_tokenizer(tokenizer) if tokenizer is not None else None
        if self._prompt_tokenizer is not None:
            self._prompt_tokenizer.check_max_length(self.max_length)
        self._warned_long = False

        self._user_client = http_client
        self._user_async_client = async_http_client
        connections = max(64, self.max_concurrency)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = Shared(lambda: httpx.Client(timeout=self._timeout, limits=limits), _close_client)
        self._async_clients = LoopClients(lambda: httpx.AsyncClient(timeout=self._timeout, limits=limits))
        self._executor = Shared(self._new_pool, _shutdown_pool)
        self._last_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar(
            "qwen_rerank_last_usage", default=None
        )

    def __repr__(self) -> str:
        urls = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        key = ", api_key='***'" if self._api_key else ""
        api = f", api={self.api!r}" if self.api != "vllm" else ""
        return (
            f"VLLMReranker(base_url={urls!r}, model={self.model!r}, template={self.template!r}{api}"
            f"{key}, tokenizer={self.tokenizer_name!r}, max_length={self.max_length})"
        )

    def _endpoints(
        self, urls: Sequence[Any], api_key: str | None
    ) -> tuple[list[str], list[str], dict[str, dict[str, str]], list[str]]:
        """Shown base URLs, rerank URLs, the headers for each rerank URL, and every secret to hide."""
        shown, rerank_urls, secrets = [], [], [api_key] if api_key else []
        headers: dict[str, dict[str, str]] = {}
        for url in urls:
            plain, basic, hidden = _secrets.split_userinfo(url) if isinstance(url, str) else (url, None, [])
            shown.append(plain)
            secrets += hidden
            sent = {"Content-Type": "application/json", "Accept-Encoding": "gzip, deflate"}
            auth = basic or (f"Bearer {api_key}" if api_key else None)
            if auth:
                sent["Authorization"] = auth
            rerank_urls.append(_http.rerank_url(plain, self._dialect))
            headers[rerank_urls[-1]] = sent
        return shown, rerank_urls, headers, secrets

    @property
    def served_model(self) -> str:
        """The model name sent, or ``"<server default> at URL"`` when the server chooses."""
        return self.model if self.model else f"<server default> at {self.base_urls[0]}"

    @property
    def last_usage(self) -> Usage | None:
        """Tokens the server reported for the last call made in this thread or asyncio task.

        Summed over the call's sub-requests; ``None`` before the first call. A
        count the server did not report is ``None`` inside the `Usage`.
        """
        return self._last_usage.get()

    # -- what to send (no I/O) ------------------------------------------------------------
    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        pt = self._prompt_tokenizer
        return None if pt is None else (pt, self.max_length)

    def _sub_requests(self, query: str, documents: list[str], instruction: str) -> list[_SubRequest]:
        _check_fixed_instruction(self._dialect, instruction)
        query, instruction = escape_control_tokens(query), escape_control_tokens(instruction)
        query = break_placeholders(self._dialect, query)
        documents = [escape_control_tokens(doc) for doc in documents]
        pt = self._prompt_tokenizer
        sent_instruction: str | None = None
        if self.template == "client":
            if pt is not None:
                query_text, texts = pt.split_pairs(query, documents, instruction, self.max_length)
            else:
                query_text, texts = split_prompts(query, documents, instruction)
                self._warn_if_long(query_text, texts)
            if self._dialect.strips_texts:
                query_text, texts = split_for_stripping_server(query_text, texts)
        else:
            query_text, sent_instruction = query, self._server_instruction(instruction)
            texts = pt.truncate_documents(query, documents, instruction, self.max_length) if pt else documents
        return [
            _SubRequest(
                start,
                end,
                encode_body(
                    self._dialect,
                    query_text,
                    texts[start:end],
                    self.model,
                    instruction=sent_instruction,
                    max_tokens_per_doc=self.max_tokens_per_doc,
                ),
            )
            for start, end in _http.chunk_bounds(len(texts), self.max_documents_per_request)
        ]

    def _server_instruction(self, instruction: str) -> str | None:
        if self._dialect.instruction_field is not None:
            return instruction
        if instruction != DEFAULT_INSTRUCTION and self._dialect.fixed_instruction is None:
            raise InvalidInputError(
                f"api={self.api!r} has no instruction field, so template='server' can only use the "
                "server's default instruction. Use template='client' to send this instruction."
            )
        return None

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

    def _deadline_at(self) -> float | None:
        return None if self.deadline is None else time.monotonic() + self.deadline

    def _flow(self, sub: _SubRequest, deadline_at: float | None) -> _http.Flow:
        return _http.request_flow(
            self._replicas,
            self._policy,
            sub.end - sub.start,
            dialect=self._dialect,
            budget=self.timeout,
            deadline_at=deadline_at,
            redact=self._redact,
            log=logger.info,
        )

    def _reply_limit(self, sub: _SubRequest) -> int:
        if self.max_response_bytes is not None:
            return self.max_response_bytes
        return _http.reply_limit(sub.body, sub.end - sub.start)

    def _request_timeout(self, budget: float | None, base: httpx.Timeout) -> httpx.Timeout:
        """``base`` with no phase longer than the attempt's ``budget``."""
        if budget is None:
            return base

        def clip(seconds: float | None) -> float:
            return budget if seconds is None else min(seconds, budget)

        return httpx.Timeout(
            connect=clip(base.connect), read=clip(base.read), write=clip(base.write), pool=clip(base.pool)
        )

    @staticmethod
    def _merge(count: int, subs: Sequence[_SubRequest], parts: Sequence[list[float]]) -> list[float]:
        scores = [0.0] * count
        for sub, part in zip(subs, parts, strict=True):
            scores[sub.start : sub.end] = part
        return scores

    def _finish(self, parsed: _http.Parsed) -> list[float]:
        tally = _TALLY.get()
        if tally is not None:
            tally.add(parsed.usage)
        return parsed.scores

    # -- sync -------------------------------------------------------------------------------
    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        subs = self._sub_requests(query, documents, instruction)
        deadline_at = self._deadline_at()
        with _tally_usage(self._last_usage):
            if len(subs) == 1:
                return self._send(subs[0], deadline_at)
            with self._executor.use() as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, self._send, sub, deadline_at) for sub in subs
                ]
                try:
                    parts = [future.result() for future in futures]
                finally:
                    for future in futures:
                        future.cancel()
        return self._merge(len(documents), subs, parts)

    def _send(self, sub: _SubRequest, deadline_at: float | None = None) -> list[float]:
        """Send one sub-request, with retries and failover; its scores in document order."""
        if deadline_at is None:
            deadline_at = self._deadline_at()
        flow = self._flow(sub, deadline_at)
        with contextlib.ExitStack() as stack:
            client = self._user_client or stack.enter_context(self._client.use())
            try:
                action = next(flow)
                while True:
                    if isinstance(action, _http.Sleep):
                        time.sleep(action.seconds)
                        action = flow.send(None)
                    else:
                        action = flow.send(self._attempt(client, action, sub))
            except StopIteration as done:
                return self._finish(done.value)
            finally:
                flow.close()

    def _attempt(self, client: httpx.Client, send: _http.Send, sub: _SubRequest) -> _http.Outcome:
        """One POST, read under the size cap and the attempt's budget; what came of it."""
        note_attempt(send.url, sub)
        started = time.monotonic()
        request = client.build_request(
            "POST",
            send.url,
            content=sub.body,
            headers=self._headers[send.url],
            timeout=self._request_timeout(send.budget, client.timeout),
        )
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return exc
        reader: _http.BodyReader | None = None
        try:
            reader = _http.BodyReader(
                self._reply_limit(sub), response.headers.get("content-encoding"), send.url
            )
            for chunk in response.iter_raw():
                reader.feed(chunk)
                if send.budget is not None and time.monotonic() - started > send.budget:
                    return _http.AttemptTimeout(send.budget)
            return _http.Reply(response.status_code, reader.content(), response.headers.get("retry-after"))
        except MalformedResponseError as exc:
            return exc
        except httpx.TimeoutException as exc:
            return exc
        except httpx.HTTPError as exc:
            return _http.BodyBroken(response.status_code, reader.received if reader else 0, exc)
        finally:
            response.close()

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="qwen-rerank")

    # -- async ------------------------------------------------------------------------------
    async def _ascore(self, query: str, documents: list[str], instruction: str) -> list[float]:
        subs = self._sub_requests(query, documents, instruction)
        deadline_at = self._deadline_at()
        with _tally_usage(self._last_usage):
            if len(subs) == 1:
                return await self._asend(subs[0], deadline_at)
            gate = asyncio.Semaphore(self.max_concurrency)

            async def gated(sub: _SubRequest) -> list[float]:
                async with gate:
                    return await self._asend(sub, deadline_at)

            tasks = [asyncio.ensure_future(gated(sub)) for sub in subs]
            try:
                parts = await asyncio.gather(*tasks)
            finally:
                # One failure fails the call: stop the rest, and collect their outcomes.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return self._merge(len(documents), subs, parts)

    async def _asend(self, sub: _SubRequest, deadline_at: float | None = None) -> list[float]:
        """Async `_send`."""
        if deadline_at is None:
            deadline_at = self._deadline_at()
        flow = self._flow(sub, deadline_at)
        async with contextlib.AsyncExitStack() as stack:
            client = self._user_async_client
            if client is None:
                client = await stack.enter_async_context(self._async_clients.use())
            try:
                action = next(flow)
                while True:
                    if isinstance(action, _http.Sleep):
                        await asyncio.sleep(action.seconds)
                        action = flow.send(None)
                    else:
                        action = flow.send(await self._aattempt(client, action, sub))
            except StopIteration as done:
                return self._finish(done.value)
            finally:
                flow.close()

    async def _aattempt(self, client: httpx.AsyncClient, send: _http.Send, sub: _SubRequest) -> _http.Outcome:
        """Async `_attempt`: the whole attempt runs under ``send.budget``."""
        note_attempt(send.url, sub)
        try:
            return await asyncio.wait_for(self._aattempt_unbounded(client, send, sub), send.budget)
        except asyncio.TimeoutError:
            return _http.AttemptTimeout(send.budget or 0.0)

    async def _aattempt_unbounded(
        self, client: httpx.AsyncClient, send: _http.Send, sub: _SubRequest
    ) -> _http.Outcome:
        request = client.build_request(
            "POST",
            send.url,
            content=sub.body,
            headers=self._headers[send.url],
            timeout=self._request_timeout(send.budget, client.timeout),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return exc
        reader: _http.BodyReader | None = None
        try:
            reader = _http.BodyReader(
                self._reply_limit(sub), response.headers.get("content-encoding"), send.url
            )
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
            return _http.Reply(response.status_code, reader.content(), response.headers.get("retry-after"))
        except MalformedResponseError as exc:
            return exc
        except httpx.TimeoutException as exc:
            return exc
        except httpx.HTTPError as exc:
            return _http.BodyBroken(response.status_code, reader.received if reader else 0, exc)
        finally:
            await response.aclose()

    # -- many queries: every request's sub-requests in flight together ----------------------------
    def _score_many(self, requests: list[Request], instruction: str, progress: Progress) -> list[list[float]]:
        """Sub-requests of all requests on the pool, at most ``max_concurrency`` in flight.

        Each sub-request's ``deadline`` starts when it is sent. The first failure
        fails the call, once the sub-requests not yet started are cancelled and
        those running have finished. ``last_usage`` sums every sub-request.
        """
        tally = _ManyTally(self, requests, instruction, progress)
        with _tally_usage(self._last_usage), self._executor.use() as pool:
            futures = {
                pool.submit(contextvars.copy_context().run, self._send, sub): key
                for key, sub in tally.pending()
            }
            try:
                for future in concurrent.futures.as_completed(futures):
                    tally.done(futures[future], future.result())
            finally:
                for future in futures:
                    future.cancel()
                concurrent.futures.wait(futures)
        return tally.results()

    async def _ascore_many(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        """Async `_score_many`: tasks gated to ``max_concurrency``, all ended before returning."""
        tally = _ManyTally(self, requests, instruction, progress)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def gated(key: tuple[int, int], sub: _SubRequest) -> tuple[tuple[int, int], list[float]]:
            async with gate:
                return key, await self._asend(sub)

        with _tally_usage(self._last_usage):
            tasks = [asyncio.ensure_future(gated(key, sub)) for key, sub in tally.pending()]
            try:
                for next_done in asyncio.as_completed(tasks):
                    tally.done(*await next_done)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return tally.results()

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections and threads this reranker opened (not injected clients).

        Safe from any thread, even while calls are in flight: they finish on the
        connections they hold, which close after them. The reranker stays usable:
        a later call opens new connections. Async clients are closed on their own
        event loops.
        """
        self._client.close()
        self._executor.close()
        self._async_clients.close()

    async def aclose(self) -> None:
        """Async `close`: the running loop's connections are closed before it returns."""
        await self._async_clients.aclose_current()
        self.close()


class _Tally:
    """Usage summed over the sub-requests of one call (they may finish on several threads)."""

    def __init__(self) -> None:
        self.total = Usage()
        self._lock = threading.Lock()

    def add(self, usage: Usage) -> None:
        with self._lock:
            self.total = self.total + usage


# The tally of the call running in this context; sub-requests on pool threads get a copy.
_TALLY: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar("qwen_rerank_tally", default=None)


@contextlib.contextmanager
def _tally_usage(last: contextvars.ContextVar[Usage | None]) -> Iterator[None]:
    """Sum the usage of every sub-request sent inside, and store it in ``last`` at the end."""
    tally = _Tally()
    token = _TALLY.set(tally)
    try:
        yield
    finally:
        _TALLY.reset(token)
        last.set(tally.total)


def _close_client(client: httpx.Client) -> None:
    client.close()


def _shutdown_pool(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    pool.shutdown(wait=False)


def _attempt_budget(timeout: httpx.Timeout) -> float | None:
    """Seconds one attempt may take as a whole: the sum of the phases (None if one is unbounded)."""
    phases = (timeout.connect, timeout.write, timeout.read, timeout.pool)
    if any(p is None for p in phases):
        return None
    if timeout.read is not None and timeout.read == timeout.write == timeout.pool:
        return timeout.read  # a plain number: it bounds the attempt as given
    return float(sum(p for p in phases if p is not None))


def _make_deadline(
    deadline: Any, budget: float | None, policy: _http.RetryPolicy, replicas: int
) -> float | None:
    if deadline == "auto":
        if budget is None:
            return None
        return (policy.max_retries + replicas) * budget + policy.max_retries * policy.max_wait
    if deadline is None:
        return None
    seconds = _check_seconds("deadline", deadline)
    if seconds <= 0:
        raise InvalidInputError(
            f"deadline must be a positive number of seconds, 'auto' or None, got {deadline!r}."
        )
    return seconds


class _ManyTally:
    """The sub-requests of a many-queries call, and their scores as they come back, merged per request."""

    def __init__(
        self, reranker: VLLMReranker, requests: list[Request], instruction: str, progress: Progress
    ) -> None:
        self._reranker = reranker
        self._counts = [len(documents) for _, documents in requests]
        self._subs = [reranker._sub_requests(q, documents, instruction) for q, documents in requests]
        self._parts: list[list[list[float] | None]] = [[None] * len(subs) for subs in self._subs]
        self._left = [len(subs) for subs in self._subs]
        self._progress = progress

    def pending(self) -> list[tuple[tuple[int, int], _SubRequest]]:
        """Every sub-request with its key ``(request, part)``, in request order."""
        return [((r, k), sub) for r, subs in enumerate(self._subs) for k, sub in enumerate(subs)]

    def done(self, key: tuple[int, int], scores: list[float]) -> None:
        request, part = key
        self._parts[request][part] = scores
        self._left[request] -= 1
        self._progress(1 if self._left[request] == 0 else 0, len(scores))

    def results(self) -> list[list[float]]:
        out = []
        for count, subs, parts in zip(self._counts, self._subs, self._parts, strict=True):
            out.append(self._reranker._merge(count, subs, [p for p in parts if p is not None]))
        return out


def _check_template(dialect: Dialect, template: Any) -> Literal["client", "server"]:
    """The template mode to use: ``template``, or the dialect's default when it is ``None``."""
    if template is None:
        return dialect.default_template
    if template not in ("client", "server"):
        raise InvalidInputError(f"template must be 'client', 'server' or None, got {template!r}.")
    if template == "server" and not dialect.server_template:
        raise InvalidInputError(
            f"api={dialect.name!r} serves the -seq-cls model, which applies no Qwen3 prompt, so "
            "template='server' would score the raw pair. Use template='client' (the default): the "
            "client wraps the prompt."
        )
    if template == "client" and dialect.applies_template:
        raise InvalidInputError(
            f"api={dialect.name!r} servers wrap every pair in the rerank template of the model file "
            "themselves, so template='client' would wrap each prompt twice and score it wrongly. Use "
            "template='server' (the default for this api)."
        )
    return "client" if template == "client" else "server"


def _check_fixed_instruction(dialect: Dialect, instruction: str) -> None:
    """Refuse an instruction that a server with a fixed one would silently replace."""
    fixed = dialect.fixed_instruction
    if fixed is None or instruction == fixed:
        return
    raise InvalidInputError(
        f"llama-server (api={dialect.name!r}) applies the fixed instruction of the GGUF's rerank "
        f"template ({fixed!r}) and ignores any other, so instruction={instruction!r} would be "
        "silently replaced. For a custom instruction, use LocalReranker, or serve the model with "
        "vLLM or SGLang (api='vllm' or 'sglang')."
    )


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
