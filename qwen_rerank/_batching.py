"""Length-aware batching: group prompts of similar length under a token budget."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(lengths: Sequence[int], max_tokens: int, *, shared: int = 0) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first.

    A batch is padded to its longest row, and every row also holds ``shared``
    tokens (a reused prefix's keys and values), so a batch costs
    ``rows x (shared + longest)``; each batch keeps that under ``max_tokens``.
    Sorting by length first keeps padding small. A row over the budget gets a
    batch of its own. Ties keep input order, so the plan is deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (shared + lengths[current[0]]) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
