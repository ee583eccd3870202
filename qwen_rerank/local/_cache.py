"""A small thread-safe LRU map from score keys to scores."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

__all__ = ["ScoreCache"]


class ScoreCache:
    """Least-recently-used scores, at most ``maxsize`` entries; safe to share between threads.

    Keys hold references to the texts they are built from, so a full cache keeps
    up to ``maxsize`` documents alive.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get_many(self, keys: Sequence[Hashable]) -> list[float | None]:
        """The cached score of each key, or ``None``; hits become most recently used."""
        found: list[float | None] = []
        with self._lock:
            for key in keys:
                value = self._data.get(key)
                if value is not None:
                    self._data.move_to_end(key)
                found.append(value)
        return found

    def put_many(self, items: Sequence[tuple[Hashable, float]]) -> None:
        """Store scores, evicting the least recently used entries beyond ``maxsize``."""
        with self._lock:
            for key, value in items:
                self._data[key] = value
                self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._data.clear()
