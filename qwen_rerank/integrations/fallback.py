"""``on_error`` and ``trace_content`` for the adapters: one backend failure rule, framework-free.

An adapter begins each call with [`RerankCall.begin`][qwen_rerank.integrations.fallback.RerankCall.begin]
(or ``await RerankCall.abegin(...)``), which builds the backend if this is its first use. A backend
that cannot be built is a failure like any other: raised, or with ``on_error="passthrough"`` kept
in the call, which never hands it out as a backend. The call's
[`rerank`][qwen_rerank.integrations.fallback.RerankCall.rerank] hands ``on_error`` to the core
([`Reranker.rerank`][qwen_rerank.Reranker.rerank]) or, when there is no backend, gives back the
retrieval order itself; its ``usage()`` and ``model()`` say what there is to say either way.
`fallback_metadata` is what each adapter adds to a document that was not reranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qwen_rerank._fallback import BACKEND_FAILURES, check_on_error, passthrough_results, record_fallback
from qwen_rerank._tracing import content_traced, rerank_span
from qwen_rerank.base import Reranker
from qwen_rerank.integrations._inputs import ItemMedia, with_media
from qwen_rerank.integrations._lazy import LazyReranker
from qwen_rerank.integrations._usage import served_model, usage_of
from qwen_rerank.media import Content
from qwen_rerank.results import RerankResult

__all__ = ["RerankCall", "check_on_error", "fallback_metadata"]


class RerankCall:
    """One adapter call: its backend, or the backend failure that kept it from being built.

    Made by `begin` or `abegin`, never by hand. Its methods work the same with or without a
    backend, so an adapter has nothing to check.
    """

    def __init__(self, backend: Reranker | Exception) -> None:
        self._backend = backend

    @classmethod
    def begin(cls, backend: LazyReranker, on_error: Any) -> RerankCall:
        """The call, with ``backend`` built now if this is its first use.

        Raises:
            QwenRerankError: The backend failure (a RemoteError, ModelLoadError or
                OutOfMemoryError) that kept it from being built, unless
                ``on_error="passthrough"``, which keeps the failure in the call instead.
        """
        try:
            return cls(backend.get())
        except BACKEND_FAILURES as exc:
            if check_on_error(on_error) == "raise":
                raise
            return cls(exc)

    @classmethod
    async def abegin(cls, backend: LazyReranker, on_error: Any) -> RerankCall:
        """Async `begin`: a first build runs in a worker thread."""
        try:
            return cls(await backend.aget())
        except BACKEND_FAILURES as exc:
            if check_on_error(on_error) == "raise":
                raise
            return cls(exc)

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        on_error: Any,
        trace_content: bool,
        ids: Sequence[str] | None = None,
        media: Sequence[ItemMedia | None] | None = None,
        **settings: Any,
    ) -> list[RerankResult]:
        """``backend.rerank`` with the adapter's settings; the retrieval order when there is no backend.

        ``ids`` are the documents' own ids, for the span in place of their positions; ``media``
        the images and videos of each document (see `with_media`), scored with its text when the
        backend is multimodal.
        """
        backend = self._backend
        if isinstance(backend, Exception):
            return _without_backend(backend, query, texts, settings.get("top_n"), trace_content, ids)
        documents = _documents(backend, texts, media)
        with content_traced(trace_content, ids):
            return backend.rerank(query, documents, on_error=on_error, **settings)

    async def arerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        on_error: Any,
        trace_content: bool,
        ids: Sequence[str] | None = None,
        media: Sequence[ItemMedia | None] | None = None,
        **settings: Any,
    ) -> list[RerankResult]:
        """Async `rerank`, through the backend's native ``arerank``."""
        backend = self._backend
        if isinstance(backend, Exception):
            return _without_backend(backend, query, texts, settings.get("top_n"), trace_content, ids)
        documents = _documents(backend, texts, media)
        with content_traced(trace_content, ids):
            return await backend.arerank(query, documents, on_error=on_error, **settings)

    def usage(self) -> dict[str, int | None] | None:
        """The tokens the server reported for this call (`usage_of`); read it right after `rerank`.

        ``None`` without a backend, or from one with none to tell (a local one).
        """
        return None if isinstance(self._backend, Exception) else usage_of(self._backend)

    def model(self, default: str) -> str:
        """The model that scores, as tracing events report it (`served_model`); else ``default``."""
        return default if isinstance(self._backend, Exception) else served_model(self._backend)


def _documents(
    backend: Reranker, texts: Sequence[str], media: Sequence[ItemMedia | None] | None
) -> list[Content]:
    return list(texts) if media is None else with_media(texts, media, backend.multimodal)


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
