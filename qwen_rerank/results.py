"""Rerank results, and the one rule that turns scores into a ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_rerank.exceptions import QwenRerankError

__all__ = ["RerankResult", "rank"]


@dataclass(frozen=True)
class RerankResult:
    """One reranked document.

    Attributes:
        index: Position of the document in the list that was passed in.
        score: Relevance in [0, 1]: the model's probability of answering "yes".
        document: The document text, as it was passed in (not truncated).
    """

    index: int
    score: float
    document: str


def rank(
    documents: Sequence[str],
    scores: Sequence[float],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[RerankResult]:
    """Sort documents by score, highest first; ties keep input order.

    Keeps the documents whose score is at least ``score_threshold``, then the
    first ``top_n`` of them. Arguments are assumed validated.
    """
    if len(scores) != len(documents):
        raise QwenRerankError(f"Got {len(scores)} scores for {len(documents)} documents.")
    order = sorted(range(len(documents)), key=lambda i: -scores[i])
    results = [RerankResult(index=i, score=float(scores[i]), document=documents[i]) for i in order]
    if score_threshold is not None:
        results = [r for r in results if r.score >= score_threshold]
    if top_n is not None:
        results = results[:top_n]
    return results


def check_scores(scores: Sequence[float], expected: int) -> list[float]:
    """Return the scores as floats after checking there is one finite score in [0, 1] per document."""
    if len(scores) != expected:
        raise QwenRerankError(f"Got {len(scores)} scores for {expected} documents.")
    out = [float(s) for s in scores]
    for position, value in enumerate(out):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise QwenRerankError(f"Score {value!r} for document {position} is not a probability in [0, 1].")
    return out
