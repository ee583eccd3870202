"""Token usage summed over the sub-requests of one call, whichever threads or tasks send them."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

from qwen_rerank.remote._dialects import Usage

__all__ = ["add_usage", "tally_usage"]


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
def tally_usage(last: contextvars.ContextVar[Usage | None]) -> Iterator[None]:
    """Sum the usage of every sub-request sent inside, and store it in ``last`` at the end."""
    tally = _Tally()
    token = _TALLY.set(tally)
    try:
        yield
    finally:
        _TALLY.reset(token)
        last.set(tally.total)


def add_usage(usage: Usage) -> None:
    """Count ``usage`` in the tally of the call running in this context, if any."""
    tally = _TALLY.get()
    if tally is not None:
        tally.add(usage)
