"""``on_error`` and ``trace_content`` for the adapters: one backend failure rule, framework-free.

An adapter gets its backend with `backend_or_failure` (a backend that
cannot be built is a failure like any other), then reranks with
`rerank_through`, which hands ``on_error`` to the core
([`Reranker.rerank`][qwen_rerank.Reranker.rerank]) or, when there is no
backend, gives back the retrieval order itself. `fallback_metadata` is
what each adapter adds to a document that was not reranked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from qwen_rerank._fallback import BACKEND_FAILURES, check_on_error, passthrough_results, record_fallback
from qwen_rerank._tracing import content_traced, rerank_span
from qwen_rerank.base import Reranker
from qwen_rerank.results import RerankResult

__all__ = [
    "abackend_or_failure",
    "arerank_through",
    "backend_or_failure",
    "check_on_error",
    "fallback_metadata",
    "rerank_through",
]


def backend_or_failure(get: Callable[[], Reranker], on_error: Any) -> Reranker | Exception:
    """The backend, or with ``on_error="passthrough"`` the backend failure that kept it from being built."""
    try:
        return get()
    except BACKEND_FAILURES as exc:
        if check_on_error(on_error) == "raise":
            raise
        return exc


async def abackend_or_failure(get: Callable[[], Awaitable[Reranker]], on_error: Any) -> Reranker | Exception:
    """Async `backend_or_failure`."""
    try:
        return await get()
    except BACKEND_FAILURES as exc:
        if check_on_error(on_error) == "raise":
            raise
        return exc


def rerank_through(
    backend: Reranker | Exception,
    query: str,
    texts: Sequence[str],
    *,
    on_error: Any,
    trace_content: bool,
    ids: Sequence[str] | None = None,
    **settings: Any,
) -> list[RerankResult]:
    """``backend.rerank`` with the adapter's settings; the retrieval order when there is no backend.

    ``ids`` are the documents' own ids, for the span in place of their positions.
    """
    if isinstance(backend, Exception):
        return _without_backend(backend, query, texts, settings.get("top_n"), trace_content, ids)
    with content_traced(trace_content, ids):
        return backend.rerank(query, texts, on_error=on_error, **settings)


async def arerank_through(
    backend: Reranker | Exception,
    query: str,
    texts: Sequence[str],
    *,
    on_error: Any,
    trace_content: bool,
    ids: Sequence[str] | None = None,
    **settings: Any,
) -> list[RerankResult]:
    """Async `rerank_through`."""
    if isinstance(backend, Exception):
        return _without_backend(backend, query, texts, settings.get("top_n"), trace_content, ids)
    with content_traced(trace_content, ids):
        return await backend.arerank(query, texts, on_error=on_error, **settings)


def _without_backend(
    error: Exception,
    query: str,
    texts: Sequence[str],
    top_n: int | None,
    trace_content: bool,
    ids: Sequence[str] | None,
) -> list[RerankResult]:
    """The retrieval order when no backend could be built, with a span that says why."""
    record_fallback(error)
    with content_traced(trace_content, ids), rerank_span(None, query, texts, top_n) as trace:
        trace.fell_back(error)
        return trace.done(passthrough_results(texts, top_n, error))


def fallback_metadata(result: RerankResult) -> dict[str, Any]:
    """``{"reranked": False, "rerank_error": "<error class>"}`` for a result not reranked, else ``{}``."""
    return {} if result.reranked else {"reranked": False, "rerank_error": result.error}
