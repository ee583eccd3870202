"""The remote backend's reranker: a client for rerank servers (vLLM, SGLang, Cohere-shaped), sync and async.

It imports neither torch nor transformers (unless ``tokenizer=`` asks for one). The
class holds the settings and makes one call per batch to its
[`Sender`][qwen_rerank.remote._sender.Sender], as an ``httpx.Client`` does to its
transport; each concern lives in its own module:

- `_settings`: the settings and their checks; `_bodies`: what is sent;
- `_sender`: the send seam (fan-out, retries and failover, attempts, usage, the deadline);
  `_transport`: the sync client's bounded sockets; `_clients`: connections, threads and
  closing;
- `_retry`: the retry and failover policy; `_replies`: what a reply means;
  `_urls`: endpoints and replicas; `_dialects`: wire formats.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from qwen_rerank import _secrets
from qwen_rerank._chunking import LongDocumentsMode, WindowPlan
from qwen_rerank._requests import Progress, Request, one_request_call
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION, MediaLimits
from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.remote._bodies import RequestBuilder, escaped_windows, load_tokenizer
from qwen_rerank.remote._clients import Connections
from qwen_rerank.remote._dialects import ApiName, Usage
from qwen_rerank.remote._sender import Sender
from qwen_rerank.remote._settings import (
    Endpoints,
    Limits,
    Timing,
    check_chunking,
    check_dialect,
    check_fixed_instruction,
    check_model,
    check_template,
)

__all__ = ["API_KEY_ENV", "Usage", "VLLMReranker"]

API_KEY_ENV = "QWEN_RERANK_API_KEY"


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
            then gets the sum of its phases. Sync calls hold it as exactly as
            async ones, whatever the server sends (headers, interim responses, chunk
            framing); with an injected ``http_client`` its own timeouts apply between bytes.
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
        multimodal: The server runs a Qwen3-VL-Reranker (vLLM with its chat
            template): queries and documents may hold images and video (see
            `qwen_rerank.media`), sent as vLLM's content parts. Needs
            ``api="vllm"`` and ``template="server"`` (the default with it).
            Local images are sent as base64 data URLs; URLs as they are, for
            the server to fetch; a video by URL only (see docs/multimodal.md).
            The default instruction is then Qwen3-VL-Reranker's own,
            [`DEFAULT_VL_INSTRUCTION`][qwen_rerank.media.DEFAULT_VL_INSTRUCTION].
        media_limits: With ``multimodal``: the most bytes of a local image that
            is sent (``MediaLimits.max_bytes``, 32 MiB by default).
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
        multimodal: bool = False,
        media_limits: MediaLimits | None = None,
    ) -> None:
        super().__init__(
            instruction=instruction,
            long_documents=long_documents,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        check_chunking(long_documents, tokenizer)
        dialect = check_dialect(api)
        self.api: ApiName = api
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._endpoints = Endpoints.check(base_url, key, dialect)
        _secrets.guard_logs(self._endpoints.redact)
        self.base_urls: list[str] = self._endpoints.base_urls
        self.model = check_model(model, dialect)
        self._multimodal = bool(multimodal)
        if self._multimodal:
            template = _check_multimodal(api, template)
            if instruction is None:
                self.instruction = DEFAULT_VL_INSTRUCTION
        self.template: Literal["client", "server"] = check_template(template, dialect)
        check_fixed_instruction(dialect, self.instruction)
        sizes = max_documents_per_request, max_concurrency, max_length, max_tokens_per_doc, max_response_bytes
        self._limits = Limits.check(dialect, self.template, *sizes)
        self._timing = Timing.check(
            timeout, deadline, max_retries, retry_backoff, max_retry_wait, replicas=len(self.base_urls)
        )
        self.tokenizer_name = tokenizer
        prompt_tokenizer = load_tokenizer(tokenizer, self.max_length) if tokenizer is not None else None
        self._builder = RequestBuilder(
            dialect,
            self.template,
            self.model,
            self._limits,
            prompt_tokenizer,
            media_limits=(media_limits or MediaLimits()) if self._multimodal else None,
        )
        self._connections = Connections(self._timing, self._limits, http_client, async_http_client)
        self._sender = Sender(self._builder, self._endpoints, self._timing, self._connections)

    @property
    def multimodal(self) -> bool:
        """Whether this reranker sends images and video (built with ``multimodal=True``)."""
        return self._multimodal

    def __repr__(self) -> str:
        urls = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        key = ", api_key='***'" if self._endpoints.keyed else ""
        api = f", api={self.api!r}" if self.api != "vllm" else ""
        return (
            f"VLLMReranker(base_url={urls!r}, model={self.model!r}, template={self.template!r}{api}"
            f"{key}, tokenizer={self.tokenizer_name!r}, max_length={self.max_length})"
        )

    # -- settings, as attributes ------------------------------------------------------------
    max_documents_per_request = property(lambda self: self._limits.max_documents_per_request)
    max_concurrency = property(lambda self: self._limits.max_concurrency)
    max_length = property(lambda self: self._limits.max_length)
    max_tokens_per_doc = property(lambda self: self._limits.max_tokens_per_doc)
    max_response_bytes = property(lambda self: self._limits.max_response_bytes)
    timeout = property(lambda self: self._timing.attempt)
    deadline = property(lambda self: self._timing.deadline)

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
        return self._sender.last_usage.get()

    # -- the hooks of the pipeline ------------------------------------------------------------
    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        pt = self._builder.tokenizer
        return None if pt is None else (pt, self.max_length)

    def _plan_windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None:
        """Windows cut from the text as sent (control tokens escaped); spans in the original text."""
        return escaped_windows(super()._plan_windows, self._builder, query, documents, instruction)

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        """Each request's scores, from its sub-requests, sent by the `Sender`; see `Sender.send`.

        In a one-request call (``score``, ``rerank``) one deadline holds for all its sub-requests.
        """
        one = progress is one_request_call
        return self._sender.send(requests, instruction, progress, one_deadline=one)

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        """Async `_score_batch`."""
        one = progress is one_request_call
        return await self._sender.asend(requests, instruction, progress, one_deadline=one)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def _client(self) -> Any:
        """The shared sync client holder (its ``current`` is the open client, if any)."""
        return self._connections.client

    def close(self) -> None:
        """Close the connections and threads this reranker opened (not injected clients).

        Safe from any thread, even while calls are in flight: they finish on the
        connections they hold, which close after them. The reranker stays usable:
        a later call opens new connections. Async clients are closed on their own
        event loops.
        """
        self._connections.close()

    async def aclose(self) -> None:
        """Async `close`: the running loop's connections are closed before it returns."""
        await self._connections.aclose()


def _check_multimodal(api: str, template: str | None) -> Literal["server"]:
    """``multimodal=True``'s template: the server's, as vLLM applies it to content parts."""
    if api != "vllm" or template == "client":
        raise InvalidInputError(
            f"multimodal=True needs api='vllm' and template='server' (got api={api!r}, "
            f"template={template!r}): vLLM applies the Qwen3-VL-Reranker's chat template to the "
            "content parts it is sent."
        )
    return "server"
