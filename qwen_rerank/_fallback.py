"""``on_error="passthrough"``: when the backend fails, give back retrieval order instead of failing.

One rule, used by [`Reranker.rerank`][qwen_rerank.Reranker.rerank] and by
every adapter: a backend failure (the ``RemoteError`` family, ``ModelLoadError``,
``OutOfMemoryError``, ``InvalidScoreError``) becomes the documents in the order they came, ``top_n``
applied, none dropped, each marked ``reranked=False`` with the error's class.
Bad input (``InvalidInputError``) is always raised. Each fallback is counted
([`fallback_counts`][qwen_rerank.fallback_counts]) and logged as a warning at most once per error kind
per minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from qwen_rerank.exceptions import (
    InvalidInputError,
    InvalidScoreError,
    ModelLoadError,
    OutOfMemoryError,
    RemoteError,
)
from qwen_rerank.media import Content
from qwen_rerank.results import RerankResult

__all__ = [
    "BACKEND_FAILURES",
    "OnError",
    "aguarded",
    "check_on_error",
    "error_summary",
    "fallback_counts",
    "guarded",
    "passthrough_results",
    "record_fallback",
    "reset_fallback_counts",
]

OnError = Literal["raise", "passthrough"]

#: The failures ``on_error="passthrough"`` absorbs: the backend's, never the caller's.
BACKEND_FAILURES: tuple[type[Exception], ...] = (
    RemoteError,
    ModelLoadError,
    OutOfMemoryError,
    InvalidScoreError,
)

#: Seconds between two warnings about the same kind of error.
WARN_EVERY = 60.0

logger = logging.getLogger("qwen_rerank")

_lock = threading.Lock()
_counts: dict[str, int] = {}
_last_warned: dict[str, float] = {}


def check_on_error(value: Any) -> OnError:
    """``value`` if it is ``"raise"`` or ``"passthrough"``.

    Raises:
        InvalidInputError: any other value.
    """
    if value == "raise" or value == "passthrough":
        return "raise" if value == "raise" else "passthrough"
    raise InvalidInputError(
        f"on_error must be 'raise' (the default) or 'passthrough' (give back retrieval order "
        f"when the backend fails), got {value!r}."
    )


def passthrough_results(
    documents: Sequence[Content], top_n: int | None, error: BaseException
) -> list[RerankResult]:
    """The documents in the order they came, the first ``top_n`` of them, each marked not reranked.

    ``score`` is 0.0 (no model scored them) and no score threshold applies:
    nothing is dropped but what ``top_n`` cuts.
    """
    kind = type(error).__name__
    kept = documents if top_n is None else documents[:top_n]
    return [
        RerankResult(index=i, score=0.0, document=text, reranked=False, error=kind)
        for i, text in enumerate(kept)
    ]


def record_fallback(error: BaseException) -> None:
    """Count one fallback for ``error``'s class, and warn if that class was not warned of in a minute."""
    kind = type(error).__name__
    now = time.monotonic()
    with _lock:
        _counts[kind] = _counts.get(kind, 0) + 1
        last = _last_warned.get(kind)
        warn = last is None or now - last >= WARN_EVERY
        if warn:
            _last_warned[kind] = now
        total = _counts[kind]
    if warn:
        # Not the message: it may quote the server's reply, and so query or document text.
        logger.warning(
            "Reranking failed (%s); returning documents in retrieval order (on_error='passthrough'). "
            "%d such fallbacks so far; this warning repeats at most once a minute. The error's message "
            "is not logged (it may quote the server's reply); on_error='raise' shows it.",
            error_summary(error),
            total,
        )


def error_summary(error: BaseException) -> str:
    """The error's class, and its HTTP status if it has one; never its message, which may quote a
    server's reply (SGLang echoes documents in its errors)."""
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    return f"{kind} (HTTP {status})" if type(status) is int else kind


def fallback_counts() -> dict[str, int]:
    """How many calls fell back to retrieval order in this process, by error class name.

    Example:
        ```python
        from qwen_rerank import fallback_counts

        fallback_counts()  # {"RemoteConnectionError": 3, "RemoteTimeoutError": 1}
        ```
    """
    with _lock:
        return dict(_counts)


def reset_fallback_counts() -> None:
    """Set every fallback count back to zero (and let the next fallback warn again)."""
    with _lock:
        _counts.clear()
        _last_warned.clear()


def guarded(
    call: Callable[[], list[RerankResult]],
    documents: Sequence[Content],
    top_n: int | None,
    on_error: OnError,
    on_fallback: Callable[[BaseException], None] | None = None,
) -> list[RerankResult]:
    """``call()``, or with ``"passthrough"`` the retrieval order when the backend fails.

    ``on_fallback`` is told of the error before the fallback results are made
    (a trace records it there).
    """
    if on_error == "raise":
        return call()
    try:
        return call()
    except BACKEND_FAILURES as exc:
        return _fall_back(exc, documents, top_n, on_fallback)


async def aguarded(
    call: Callable[[], Awaitable[list[RerankResult]]],
    documents: Sequence[Content],
    top_n: int | None,
    on_error: OnError,
    on_fallback: Callable[[BaseException], None] | None = None,
) -> list[RerankResult]:
    """Async `guarded`."""
    if on_error == "raise":
        return await call()
    try:
        return await call()
    except BACKEND_FAILURES as exc:
        return _fall_back(exc, documents, top_n, on_fallback)


def _fall_back(
    error: BaseException,
    documents: Sequence[Content],
    top_n: int | None,
    on_fallback: Callable[[BaseException], None] | None,
) -> list[RerankResult]:
    record_fallback(error)
    if on_fallback is not None:
        on_fallback(error)
    return passthrough_results(documents, top_n, error)
