"""The remote backend's reranker: a client for rerank servers and hosted rerank APIs, sync and async.

It imports neither torch nor transformers (unless ``tokenizer=`` asks for one). The
class holds the settings and makes one call per batch to its
[`Sender`][qwen_rerank.remote._sender.Sender], as an ``httpx.Client`` does to its
transport; each concern lives in its own module:

- `_settings`: the settings and their checks; `_hosting`: a hosted API's endpoint, key and
  limits; `_bodies`: what is sent (split to a hosted API's limits by `_splitting`);
- `_sender`: the send seam (fan-out, retries and failover, attempts, usage, the deadline);
  `_transport`: the sync client's bounded sockets; `_clients`: connections, threads and
  closing;
- `_retry`: the retry and failover policy; `_replies`: what a reply means;
  `_urls`: endpoints and replicas; `_dialects`: wire formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import httpx

from qwen_rerank import _secrets
from qwen_rerank._chunking import LongDocumentsMode, WindowPlan
from qwen_rerank._requests import Progress, Request
from qwen_rerank.base import Reranker
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION, MediaLimits
from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.remote._bodies import (
    RequestBuilder,
    escaped_windows,
    load_tokenizer,
    warn_server_template,
)
from qwen_rerank.remote._clients import Connections
from qwen_rerank.remote._dialects import ApiName, Usage
from qwen_rerank.remote._hosting import API_KEY_ENV, Hosting, priced
from qwen_rerank.remote._sender import Sender
from qwen_rerank.remote._settings import (
    Endpoints,
    Limits,
    Timing,
    check_chunking,
    check_dialect,
    check_fixed_instruction,
    check_media,
    check_model,
    check_price,
    check_template,
)
from qwen_rerank.remote._splitting import RequestLimits

__all__ = ["API_KEY_ENV", "RemoteReranker", "Usage", "VLLMReranker"]


class RemoteReranker(Reranker):
    """Qwen3-Reranker reached over HTTP: a server you run (vLLM, SGLang...), or a hosted API.

    With no GPU and no server, ``RemoteReranker(api="dashscope")`` (or ``"siliconflow"``,
    ``"deepinfra"``) uses a provider's hosted model, its key read from the provider's
    environment variable; see [Hosted APIs](hosted-apis.md). Scores equal
    [`LocalReranker`][qwen_rerank.LocalReranker]'s on the same checkpoint: with
    ``template="client"`` the client wraps the model card's prompt itself, and vLLM
    scores it. Results are mapped back by ``index``; a response that misses, repeats or
    invents an index, or carries a score that is not a probability, raises
    [`MalformedResponseError`][qwen_rerank.exceptions.MalformedResponseError]. A call
    returns every score or raises; it never returns part of them.

    Args:
        base_url: The server, as ``http://host:8000``, ``http://host:8000/v1``, or
            a full rerank path (``/rerank``, ``/v1/rerank``, ``/v2/rerank``); or a
            list of replicas (round-robin; one that refuses connections sits out a
            few seconds). A hosted API defaults to its public endpoint.
            ``http://user:password@host`` sends HTTP basic auth for that URL
            (instead of ``api_key``); the password is shown nowhere.
        model: The model name to send; ``None`` omits it, so the server uses the
            one it serves (a hosted API: ``qwen3-rerank`` at DashScope, else
            ``Qwen/Qwen3-Reranker-0.6B``). DashScope's ``qwen3-vl-rerank`` scores images
            and video too, at the Beijing endpoint by default.
        api_key: Sent as ``Authorization: Bearer ...``. ``None`` reads
            ``QWEN_RERANK_API_KEY`` (a hosted API: its provider's variable, such as
            ``DASHSCOPE_API_KEY``; unset, construction fails naming it); with none,
            no header is sent. Never shown in repr, logs or error messages. A key
            holding whitespace or non-ASCII characters is an
            [`InvalidInputError`][qwen_rerank.exceptions.InvalidInputError].
        region: A hosted API's region (``"singapore"``, ``"beijing"``... for DashScope),
            in place of ``base_url``; keys are per region.
        allow_http: Let a hosted API's key go over plain ``http://`` to a host other
            than loopback (refused by default).
        price_per_million_tokens: Gives ``last_usage.cost`` from the tokens reported.
        template: ``"client"`` for a server started without ``--chat-template``
            (the client builds the prompt), ``"server"`` for one started with
            ``--chat-template`` set to our template,
            [`server_template_path`][qwen_rerank.prompt.server_template_path] (the
            client sends the raw query and documents plus ``instruction``). vLLM's own
            ``qwen3_reranker.jinja`` drops the prompt's last newline and scores wrong,
            and the client cannot see the server's template, so on vLLM
            ``template="server"`` gives a [`QwenRerankWarning`][qwen_rerank.QwenRerankWarning]:
            run ``qwen-rerank check --template server`` once, which reads back the
            rendered prompt. With ``tokenizer=`` each reply's prompt token count is
            also checked against the model card's prompts, and a template of another
            length raises [`MalformedResponseError`][qwen_rerank.MalformedResponseError].
            ``None`` (the default)
            picks the dialect's: ``"server"`` for ``api="llamacpp"``, whose
            server always applies its own template, else ``"client"``.
        instruction: Default task instruction; see ``DEFAULT_INSTRUCTION``.
        max_documents_per_request: Longer lists are split into this many
            documents or fewer per request, of near-equal sizes. ``None`` (the
            default) takes 128, or 32 for ``api="tei"`` (TEI's default
            ``--max-client-batch-size``, past which it refuses a request), or a hosted
            API's limit. A hosted API's requests also keep to its token limits,
            counted with ``tokenizer`` or bounded by UTF-8 bytes without it.
        max_concurrency: At most this many sub-requests of one call are in flight
            (default 8; a hosted API: its provider's default).
        timeout: Seconds one attempt may take as a whole, from connecting to the
            last byte of the body, so a server that trickles its answer cannot
            hold a call. Connecting gets at most 5 s of it, so a dead replica is
            left quickly. An ``httpx.Timeout`` sets each phase instead; the attempt
            then gets the sum of its phases. Sync calls hold it as exactly as
            async ones, whatever the server sends (headers, interim responses, chunk
            framing); with an injected ``http_client`` its own timeouts apply between bytes.
        deadline: Seconds the whole call may take, for every call (``score``,
            ``rerank``, ``score_many``, ``rerank_many``, ``score_pairs``, sync or
            async): every sub-request, retry and backoff sleep included. ``"auto"``
            (the default) is the worst case that ``timeout`` and ``max_retries``
            allow, ``(max_retries + replicas) * timeout + max_retries *
            max_retry_wait``, for each round of ``max_concurrency`` sub-requests
            the call sends. ``None`` sets none.
        max_retries: Retries after the first attempt, on connection failures,
            connections dropped before a response, and HTTP 429, 502, 503 and 504.
            Other errors, timeouts and bodies that break off included, are raised
            at once.
        api: The server's wire format: ``"vllm"`` (default), ``"sglang"`` (SGLang's
            ``/v1/rerank``) or ``"cohere"`` (``/v2/rerank`` as LiteLLM's proxy and
            Infinity serve it; needs ``model``), ``"tei"`` (Text Embeddings Inference's
            ``/rerank``) or ``"infinity"`` (Infinity's ``/rerank``), which take
            ``template="client"`` only ([TEI and Infinity](tei-infinity.md)), ``"llamacpp"``
            (``llama-server --reranking``, which applies the default instruction
            only: another raises [`InvalidInputError`][qwen_rerank.InvalidInputError];
            [Serving with llama.cpp](llama-cpp.md)), or a hosted API: ``"dashscope"``
            (Alibaba Cloud Model Studio), ``"siliconflow"`` or ``"deepinfra"``
            ([Hosted APIs](hosted-apis.md)).
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
        max_length: Most tokens one prompt may take (default 8192; a hosted API: its
            per-item cap); keep it within the server's ``--max-model-len``. Used with ``tokenizer``.
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
        multimodal: The server is vLLM running a Qwen3-VL-Reranker (``template="server"``, the
            default with it): queries and documents may hold images and video, sent as vLLM's
            content parts ([Images and video](multimodal.md)); the default instruction is
            [`DEFAULT_VL_INSTRUCTION`][qwen_rerank.media.DEFAULT_VL_INSTRUCTION]. A hosted
            multimodal model (``api="dashscope", model="qwen3-vl-rerank"``) implies it; with a
            hosted text model it is an [`InvalidInputError`][qwen_rerank.InvalidInputError].
        media_limits: With ``multimodal``: the most bytes of a local image sent (32 MiB).
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        template: Literal["client", "server"] | None = None,
        instruction: str | None = None,
        max_documents_per_request: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 3,
        max_tokens_per_doc: int | None = None,
        tokenizer: str | None = None,
        max_length: int | None = None,
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
        region: str | None = None,
        allow_http: bool = False,
        price_per_million_tokens: float | None = None,
        multimodal: bool = False,
        media_limits: MediaLimits | None = None,
    ) -> None:
        dialect = check_dialect(api)
        hosting = Hosting.check(dialect, base_url, region, api_key, model, allow_http)
        media = check_media(multimodal, dialect, hosting.model, template, media_limits)
        super().__init__(
            instruction=DEFAULT_VL_INSTRUCTION if media and instruction is None else instruction,
            long_documents=long_documents,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        check_chunking(long_documents, tokenizer)
        self.api: ApiName = api
        self._endpoints = Endpoints.check(hosting.base_url, hosting.api_key, dialect, hosting.model)
        _secrets.guard_logs(self._endpoints.redact)
        self.base_urls: list[str] = self._endpoints.base_urls
        self.model = check_model(hosting.model, dialect)
        self.template: Literal["client", "server"] = check_template(
            "server" if media and template is None else template, dialect
        )
        check_fixed_instruction(dialect, self.instruction)
        sizes = hosting.sizes(max_documents_per_request, max_concurrency, max_length)
        self._limits = Limits.check(dialect, self.template, *sizes, max_tokens_per_doc, max_response_bytes)
        self.price_per_million_tokens = check_price(price_per_million_tokens)
        self._timing = Timing.check(
            timeout, deadline, max_retries, retry_backoff, max_retry_wait, replicas=len(self.base_urls)
        )
        self.tokenizer_name = tokenizer
        prompt_tokenizer = load_tokenizer(tokenizer, self.max_length) if tokenizer is not None else None
        if self.template == "server" and media is None:  # a Qwen3-VL server uses its own template
            warn_server_template(dialect)
        budget = hosting.budget(self._limits.max_documents_per_request)
        self._builder = RequestBuilder(
            dialect,
            self.template,
            self.model,
            self._limits,
            prompt_tokenizer,
            budget,
            media,
            hosting.row.media if hosting.row is not None else None,
        )
        self._connections = Connections(self._timing, self._limits, http_client, async_http_client)
        self._sender = Sender(self._builder, self._endpoints, self._timing, self._connections)

    def __repr__(self) -> str:
        urls = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        key = ", api_key='***'" if self._endpoints.keyed else ""
        api = f", api={self.api!r}" if self.api != "vllm" else ""
        return (
            f"{type(self).__name__}(base_url={urls!r}, model={self.model!r}, template={self.template!r}{api}"
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
    multimodal = property(lambda self: self._builder.media_limits is not None)

    @property
    def served_model(self) -> str:
        """The model name sent, or ``"<server default> at URL"`` when the server chooses."""
        return self.model if self.model else f"<server default> at {self.base_urls[0]}"

    @property
    def request_limits(self) -> RequestLimits | None:
        """What one request to a hosted API may hold, as calls are split to it; ``None`` for a server."""
        return self._builder.budget

    @property
    def last_usage(self) -> Usage | None:
        """Tokens the server reported for the last call made in this thread or asyncio task.

        Summed over the call's sub-requests; ``None`` before the first call. A
        count the server did not report is ``None`` inside the `Usage`; ``cost``
        is set with ``price_per_million_tokens``.
        """
        return priced(self._sender.last_usage.get(), self.price_per_million_tokens)

    # -- the hooks of the pipeline ------------------------------------------------------------
    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        pt = self._builder.tokenizer
        return None if pt is None else (pt, self.max_length)

    def _plan_windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None:
        """Windows cut from the text as sent (control tokens escaped); spans in the original text."""
        return escaped_windows(super()._plan_windows, self._builder, query, documents, instruction)

    def _call_scope(self, instructions: list[str]) -> AbstractContextManager[object]:
        """One call: its instructions checked before anything is sent, one deadline, usage summed."""
        return self._sender.call(instructions)

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Each request's scores, from its sub-requests, sent by the `Sender`; see `Sender.send`."""
        return self._sender.send(requests, instruction, progress)

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Async `_score_batch`."""
        return await self._sender.asend(requests, instruction, progress)

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


class VLLMReranker(RemoteReranker):
    """[`RemoteReranker`][qwen_rerank.RemoteReranker] under its first name, kept for existing code."""
