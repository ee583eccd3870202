"""The bookkeeping of one call: which prompts run together, and progress reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from qwen_rerank._requests import Progress, Request
from qwen_rerank.local._scorer import PrefixState

__all__ = ["Tracker", "Work", "common_head"]


def common_head(prompts: list[list[int]]) -> list[int]:
    """The longest token prefix all ``prompts`` share, leaving each at least one token of its own."""
    first, length = prompts[0], min(map(len, prompts)) - 1
    for prompt in prompts[1:]:
        same = 0
        while same < length and prompt[same] == first[same]:
            same += 1
        length = same
    return first[:length]


@dataclass
class Work:
    """Prompts that run together: their rows, scores, and the prefix (``head``) the rows continue.

    ``head`` is ``None`` for whole prompts; ``slots`` says which (request,
    document) each prompt scores.
    """

    prompts: list[list[int]]
    rows: list[list[int]]
    scores: list[float]
    prefix: PrefixState | None = None
    head: list[int] | None = None
    slots: list[tuple[int, int]] = field(default_factory=list)

    def add(self, prompt: list[int], row: list[int], slot: tuple[int, int]) -> None:
        self.prompts.append(prompt)
        self.rows.append(row)
        self.scores.append(0.0)
        self.slots.append(slot)


class Tracker:
    """Turns scored prompts into ``progress(queries, documents)`` reports.

    A request counts as a query done when its last prompt is scored; its
    documents are counted as their prompts are scored, plus, at that moment,
    its repeats and cached documents, which need no prompt.
    """

    def __init__(self, requests: list[Request], pending: list[int], progress: Progress | None) -> None:
        self.progress = progress
        self._pending = list(pending)
        self._free = [len(documents) - count for (_, documents), count in zip(requests, pending, strict=True)]
        if progress is not None:
            ready = [i for i, count in enumerate(pending) if count == 0]
            if ready:
                progress(len(ready), sum(self._free[i] for i in ready))

    def scored(self, requests: list[int]) -> None:
        """Report one scored prompt for each entry of ``requests`` (request indices)."""
        if self.progress is None:
            return
        finished = 0
        documents = len(requests)
        for i in requests:
            self._pending[i] -= 1
            if self._pending[i] == 0:
                finished += 1
                documents += self._free[i]
        self.progress(finished, documents)
