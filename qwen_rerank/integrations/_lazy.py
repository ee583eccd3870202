"""The lazy backend's lifecycle: built once on first use, released by ``close()``, pickled as a recipe."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from qwen_rerank.base import Reranker


class LazyReranker:
    """A backend built once, on first use (or at once with ``eager``), even when threads race.

    ``owned`` says the adapter built it (rather than receiving a ready one), so
    `close` releases it. ``settings`` records what it was built from, so
    an adapter can tell that a field changed since. Pickling keeps the recipe,
    not a backend built from it: the copy builds its own on first use.
    """

    def __init__(
        self,
        build: Callable[[], Reranker],
        *,
        eager: bool = False,
        owned: bool = True,
        settings: Any = None,
    ) -> None:
        self._build = build
        self.owned = owned
        self.settings = settings
        self._reranker: Reranker | None = None
        self._lock = threading.Lock()
        if eager:
            self.get()

    @property
    def built(self) -> bool:
        """Whether the backend exists now."""
        return self._reranker is not None

    def get(self) -> Reranker:
        """The backend, building it now if this is the first use."""
        reranker = self._reranker
        if reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = self._build()
                reranker = self._reranker
        return reranker

    async def aget(self) -> Reranker:
        """The backend; a first build runs in a worker thread so the event loop keeps running."""
        if self._reranker is not None:
            return self._reranker
        return await asyncio.to_thread(self.get)

    def close(self) -> None:
        """Close and drop a backend built here (a later use builds a new one); a ready one is kept."""
        released = self._release()
        if released is not None:
            released.close()

    async def aclose(self) -> None:
        """Async `close`."""
        released = self._release()
        if released is not None:
            await released.aclose()

    def _release(self) -> Reranker | None:
        if not self.owned:
            return None
        with self._lock:
            released, self._reranker = self._reranker, None
        return released

    def __deepcopy__(self, memo: dict[int, Any]) -> LazyReranker:
        # A copied adapter shares the backend: a loaded model is never duplicated.
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {
            "build": self._build,
            "owned": self.owned,
            "settings": self.settings,
            "reranker": None if self.owned else self._reranker,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._build = state["build"]
        self.owned = state["owned"]
        self.settings = state["settings"]
        self._reranker = state["reranker"]
        self._lock = threading.Lock()
