"""OpenTelemetry spans for rerank calls, named as the OpenInference conventions name a RERANKER span.

With ``opentelemetry-api`` installed (``pip install "qwen-rerank[otel]"``), each
``rerank``/``arerank`` call is one span, and ``score_many``/``rerank_many`` one
span with a child per request. Without it nothing is imported and nothing is
done; with it but no tracer provider configured, spans are not recording and
no attribute is computed.

Attribute names mirror ``openinference.semconv.trace`` (``openinference.span.kind``,
``reranker.*``, ``document.*``, ``llm.token_count.*``), so Phoenix, Langfuse and
similar tools show the span as a reranker step. Query and document text are
recorded only with ``trace_content`` (often private); ids, scores, the model,
token usage, the replica (its URL without credentials), retries and the error's
class always are. An error's message may quote the server's reply, and so query
or document text: without ``trace_content`` a span tells the error's class and
HTTP status only.

A span records as many documents as fit in OpenTelemetry's attribute limit
(``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, else ``OTEL_ATTRIBUTE_COUNT_LIMIT``, else
128) beside the attributes that identify it: the best results and the first
inputs, with ``qwen_rerank.output_documents_omitted`` and
``qwen_rerank.input_documents_omitted`` counting the rest.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from qwen_rerank._fallback import error_summary
from qwen_rerank._secrets import display_url
from qwen_rerank.media import Content, describe
from qwen_rerank.results import RerankResult, Scored

__all__ = [
    "ManyTrace",
    "RerankTrace",
    "content_traced",
    "many_span",
    "note_attempt",
    "rerank_span",
]

# OpenInference attribute names (openinference-semantic-conventions), mirrored to stay dependency-free.
SPAN_KIND = "openinference.span.kind"
RERANKER = "RERANKER"
CHAIN = "CHAIN"
MODEL_NAME = "reranker.model_name"
QUERY = "reranker.query"
TOP_K = "reranker.top_k"
INPUT_DOCUMENTS = "reranker.input_documents"
OUTPUT_DOCUMENTS = "reranker.output_documents"
DOCUMENT_ID = "document.id"
DOCUMENT_SCORE = "document.score"
DOCUMENT_CONTENT = "document.content"
INPUT_VALUE = "input.value"
TOKENS_PROMPT = "llm.token_count.prompt"
TOKENS_TOTAL = "llm.token_count.total"
# Ours, where OpenInference has no name.
BACKEND = "qwen_rerank.backend"
REPLICA_URL = "qwen_rerank.replica_url"
ATTEMPTS = "qwen_rerank.attempts"
RETRIES = "qwen_rerank.retries"
REQUESTS = "qwen_rerank.requests"
FALLBACK = "qwen_rerank.fallback"
INPUTS_OMITTED = "qwen_rerank.input_documents_omitted"
OUTPUTS_OMITTED = "qwen_rerank.output_documents_omitted"
ERROR_TYPE = "error.type"

# The SDK's default span attribute limit, and how many of a span's attributes are not a document's
# (kind, model, backend, top_k, query, usage, attempts, the replica, the error...), with room to spare.
_DEFAULT_ATTRIBUTE_LIMIT = 128
_RESERVED = 24

_UNSET: Any = object()
_api: Any = _UNSET
_tracer: Any = None
_CONTENT: contextvars.ContextVar[bool] = contextvars.ContextVar("qwen_rerank_trace_content", default=False)
_IDS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("qwen_rerank_trace_ids", default=None)
_ATTEMPTS: contextvars.ContextVar[_Attempts | None] = contextvars.ContextVar(
    "qwen_rerank_attempts", default=None
)


def trace_api() -> Any:
    """``opentelemetry.trace``, imported on the first call; ``None`` when it is not installed."""
    global _api
    if _api is _UNSET:
        try:
            import opentelemetry.trace as api
        except ImportError:
            _api = None
        else:
            _api = api
    return _api


def _recording_span(name: str, start_time: int | None = None) -> Any:
    """A new span as a context manager, or ``None`` when tracing is off or not recording."""
    global _tracer
    if _tracer is None:
        api = trace_api()
        if api is None:
            return None
        # Before a provider is set this is a proxy that follows the one set later.
        _tracer = api.get_tracer("qwen_rerank")
    # We record errors ourselves (`_record_error`): the SDK would export the message whole.
    return _tracer.start_as_current_span(
        name, start_time=start_time, record_exception=False, set_status_on_exception=False
    )


@contextlib.contextmanager
def content_traced(enabled: bool, ids: Sequence[str] | None = None) -> Iterator[None]:
    """Inside, spans record query and document text if ``enabled`` (an adapter's ``trace_content=True``).

    ``ids`` are the documents' own ids (an adapter's document or node ids), recorded
    in place of their positions.
    """
    content = _CONTENT.set(True) if enabled else None
    named = _IDS.set(list(ids)) if ids is not None else None
    try:
        yield
    finally:
        if named is not None:
            _IDS.reset(named)
        if content is not None:
            _CONTENT.reset(content)


class _Attempts:
    """The HTTP attempts of one call: how many per sub-request, and the last replica tried."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.per_request: dict[int, int] = {}
        self.last_url: str | None = None

    def add(self, url: str, request: object) -> None:
        with self._lock:
            self.per_request[id(request)] = self.per_request.get(id(request), 0) + 1
            self.last_url = url


def note_attempt(url: str, request: object) -> None:
    """Record one HTTP attempt of ``request`` to ``url`` for the span of the call under way, if any."""
    attempts = _ATTEMPTS.get()
    if attempts is not None:
        attempts.add(url, request)


def _backend_name(reranker: Any) -> str:
    if reranker is None:
        return "none"  # it could not be built
    if hasattr(reranker, "base_urls"):
        api = getattr(reranker, "api", "vllm")  # the server's dialect: vllm, sglang, cohere...
        return api if isinstance(api, str) else "vllm"
    return type(reranker).__name__


def _model_name(reranker: Any) -> str:
    if reranker is None:
        return "<not loaded>"
    local = getattr(reranker, "model_name", None)
    if isinstance(local, str):
        return local
    sent = getattr(reranker, "model", None)
    if isinstance(sent, str):
        return sent
    urls = getattr(reranker, "base_urls", None)
    if isinstance(urls, list) and urls:
        return f"<server default> at {display_url(urls[0])}"
    return type(reranker).__name__


@dataclass(frozen=True)
class _Shown:
    """How one span shows its documents: with text or not, by which ids, and how many of each list."""

    content: bool = False
    ids: list[str] | None = None
    inputs: int = 0
    outputs: int = 0


class RerankTrace:
    """What one call's span is told: the fallback if any, and the results. Does nothing without a span."""

    def __init__(self, span: Any = None, shown: _Shown | None = None) -> None:
        self.span = span
        self.shown = shown or _Shown()

    def fell_back(self, error: BaseException) -> None:
        """The backend failed and the call gave back retrieval order (``on_error="passthrough"``)."""
        if self.span is None:
            return
        _record_error(self.span, error, self.shown.content)
        self.span.set_attribute(FALLBACK, True)

    def scored(self, scored: Scored) -> list[float]:
        """Record a ``score`` call's scores, documents in input order; return them."""
        if self.span is not None:
            shown = self.shown.outputs
            results = [RerankResult(i, s, "") for i, s in enumerate(scored.scores[:shown])]
            _set_documents(self.span, results, len(scored.scores), _Shown(False, self.shown.ids, 0, shown))
        return scored.scores

    def done(self, results: list[RerankResult]) -> list[RerankResult]:
        """Record ``results`` as the output documents; return them."""
        if self.span is not None:
            _set_documents(self.span, results, len(results), self.shown)
        return results


def _record_error(span: Any, error: BaseException, content: bool) -> None:
    """The error on the span; without ``content`` only its class and HTTP status, never its message."""
    from opentelemetry.trace import Status, StatusCode

    if content:
        description = f"{type(error).__name__}: {error}"
        span.record_exception(error)
    else:
        description = error_summary(error)
        # The frames, without the messages of the error and of its causes.
        frames = "".join(traceback.format_tb(error.__traceback__)) + type(error).__name__
        span.record_exception(
            error, attributes={"exception.message": description, "exception.stacktrace": frames}
        )
    span.set_status(Status(StatusCode.ERROR, description))
    span.set_attribute(ERROR_TYPE, type(error).__name__)


def _attribute_limit() -> int:
    """The most attributes a span keeps, as OpenTelemetry's environment sets it."""
    for name in ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return _DEFAULT_ATTRIBUTE_LIMIT


def _shown(reranker: Any, documents: int, outputs: int) -> _Shown:
    """How a span of ``documents`` inputs and at most ``outputs`` results shows them, within the
    attribute limit: outputs (the best first) get at least half the room their documents need."""
    content = bool(getattr(reranker, "trace_content", False)) or _CONTENT.get()
    ids = _IDS.get()
    if ids is not None and len(ids) != documents:
        ids = None
    room = max(0, _attribute_limit() - _RESERVED)
    per_input, per_output = 1 + content, 2 + content
    need_in, need_out = documents * per_input, outputs * per_output
    if need_in + need_out <= room:
        return _Shown(content, ids, documents, outputs)
    out_room = min(need_out, max(room // 2, room - need_in))
    return _Shown(content, ids, (room - out_room) // per_input, out_room // per_output)


def _set_documents(span: Any, results: Sequence[RerankResult], count: int, shown: _Shown) -> None:
    """The first of ``results`` (of ``count``) that ``shown`` has room for, and how many are left out."""
    ids = shown.ids
    for position, result in enumerate(results[: shown.outputs]):
        key = f"{OUTPUT_DOCUMENTS}.{position}."
        span.set_attribute(key + DOCUMENT_ID, ids[result.index] if ids else str(result.index))
        if result.reranked:
            span.set_attribute(key + DOCUMENT_SCORE, result.score)
        if shown.content:
            span.set_attribute(key + DOCUMENT_CONTENT, describe(result.document))
    if count > shown.outputs:
        span.set_attribute(OUTPUTS_OMITTED, count - shown.outputs)


def _set_inputs(
    span: Any,
    reranker: Any,
    query: Content,
    documents: Sequence[Content],
    top_n: int | None,
    outputs: int,
) -> _Shown:
    """The input attributes; how the span shows its documents."""
    shown = _shown(reranker, len(documents), outputs)
    ids = shown.ids
    _identify(span, reranker, RERANKER)
    span.set_attribute(TOP_K, top_n if top_n is not None else len(documents))
    if shown.content:
        span.set_attribute(QUERY, describe(query))
        span.set_attribute(INPUT_VALUE, describe(query))
    for position, text in enumerate(documents[: shown.inputs]):
        span.set_attribute(
            f"{INPUT_DOCUMENTS}.{position}.{DOCUMENT_ID}", ids[position] if ids else str(position)
        )
        if shown.content:
            span.set_attribute(f"{INPUT_DOCUMENTS}.{position}.{DOCUMENT_CONTENT}", describe(text))
    if len(documents) > shown.inputs:
        span.set_attribute(INPUTS_OMITTED, len(documents) - shown.inputs)
    return shown


def _identify(span: Any, reranker: Any, kind: str) -> None:
    """What the span is: set first, and again last, so that a span limit set lower than the
    environment's drops documents (the oldest attributes) before these."""
    span.set_attribute(SPAN_KIND, kind)
    span.set_attribute(MODEL_NAME, _model_name(reranker))
    span.set_attribute(BACKEND, _backend_name(reranker))


def _set_transport(span: Any, reranker: Any, attempts: _Attempts) -> None:
    usage = getattr(reranker, "last_usage", None)
    if usage is not None:
        if usage.prompt_tokens is not None:
            span.set_attribute(TOKENS_PROMPT, usage.prompt_tokens)
        if usage.total_tokens is not None:
            span.set_attribute(TOKENS_TOTAL, usage.total_tokens)
    if attempts.per_request:
        tries = sum(attempts.per_request.values())
        span.set_attribute(ATTEMPTS, tries)
        span.set_attribute(RETRIES, tries - len(attempts.per_request))
    if attempts.last_url is not None:
        span.set_attribute(REPLICA_URL, display_url(attempts.last_url))


@contextlib.contextmanager
def rerank_span(
    reranker: Any,
    query: Content,
    documents: Sequence[Content],
    top_n: int | None,
    name: str = "qwen_rerank.rerank",
) -> Iterator[RerankTrace]:
    """One RERANKER span around a rerank call; an error leaving it is recorded on it."""
    opened = _recording_span(name)
    if opened is None:
        yield RerankTrace()
        return
    with opened as span:
        if not span.is_recording():
            yield RerankTrace()
            return
        attempts = _Attempts()
        token = _ATTEMPTS.set(attempts)
        outputs = len(documents) if top_n is None else min(top_n, len(documents))
        shown = _Shown()
        try:
            shown = _set_inputs(span, reranker, query, documents, top_n, outputs)
            yield RerankTrace(span, shown)
        except BaseException as exc:
            _record_error(span, exc, shown.content)
            raise
        finally:
            _ATTEMPTS.reset(token)
            _set_transport(span, reranker, attempts)
            _identify(span, reranker, RERANKER)


class ManyTrace:
    """The parent span of a many-queries call; `done` adds one child per request."""

    def __init__(self, reranker: Any, span: Any = None, start: int | None = None) -> None:
        self.reranker = reranker
        self.span = span
        self.start = start

    @property
    def recording(self) -> bool:
        """Whether a span records this call: without one, `done` does nothing."""
        return self.span is not None

    def done(
        self,
        requests: Sequence[tuple[Content, Sequence[Content]]],
        results: Sequence[Sequence[RerankResult]],
        top_n: int | None = None,
    ) -> None:
        """One finished child span per request, with its inputs and results."""
        if self.span is None:
            return
        for position, ((query, documents), ranked) in enumerate(zip(requests, results, strict=True)):
            opened = _recording_span("qwen_rerank.rerank", start_time=self.start)
            with opened as child:
                child.set_attribute(REQUESTS, 1)
                child.set_attribute("qwen_rerank.request_index", position)
                shown = _set_inputs(child, self.reranker, query, documents, top_n, len(ranked))
                _set_documents(child, ranked, len(ranked), shown)


@contextlib.contextmanager
def many_span(reranker: Any, requests: int, name: str) -> Iterator[ManyTrace]:
    """The parent span of ``score_many``/``rerank_many``; an error leaving it is recorded on it."""
    opened = _recording_span(name)
    if opened is None:
        yield ManyTrace(reranker)
        return
    with opened as span:
        if not span.is_recording():
            yield ManyTrace(reranker)
            return
        attempts = _Attempts()
        token = _ATTEMPTS.set(attempts)
        try:
            _identify(span, reranker, CHAIN)
            span.set_attribute(REQUESTS, requests)
            yield ManyTrace(reranker, span, getattr(span, "start_time", None))
        except BaseException as exc:
            _record_error(span, exc, bool(getattr(reranker, "trace_content", False)) or _CONTENT.get())
            raise
        finally:
            _ATTEMPTS.reset(token)
            _set_transport(span, reranker, attempts)
