"""Rerank results, and the one rule that turns scores into a ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from qwen_rerank.exceptions import InvalidScoreError, QwenRerankError
from qwen_rerank.media import Content

__all__ = ["RerankResult", "Scored", "Usage", "rank"]

Span = tuple[int, int]


@dataclass(frozen=True)
class Usage:
    """Tokens a server reports for one call, summed over its sub-requests.

    ``prompt_tokens`` is what a rerank call is billed on; ``total_tokens`` is
    what the server calls its total (equal for rerank). A count the server did
    not report is ``None``. ``cost`` is ``total_tokens`` at the reranker's
    ``price_per_million_tokens``, in its currency; ``None`` without a price.
    """

    prompt_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            _add(self.prompt_tokens, other.prompt_tokens), _add(self.total_tokens, other.total_tokens)
        )


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


@dataclass(frozen=True)
class RerankResult:
    """One reranked document.

    Attributes:
        index: Position of the document in the list that was passed in.
        score: Relevance in [0, 1]: the model's probability of answering "yes".
        document: The document text, as it was passed in (not truncated); a
            multimodal document as its checked
            [`MultimodalContent`][qwen_rerank.media.MultimodalContent].
        truncated: True when the model did not read the whole document: in
            ``long_documents="truncate"`` mode, its prompt was longer than
            ``max_length`` and lost its tail. A backend that cannot count tokens
            (a remote one without ``tokenizer=``) sends documents whole and
            reports ``False``.
        span: In ``long_documents="chunk"`` mode, the ``(start, end)``
            character offsets in ``document`` of the window that scored best
            (``document[start:end]``); ``None`` when the document was scored whole.
        reranked: False when the backend failed and the call, made with
            ``on_error="passthrough"``, gave back the retrieval order instead;
            ``score`` is then 0.0.
        error: With ``reranked=False``, the class name of the backend's error
            (e.g. ``"RemoteTimeoutError"``); otherwise ``None``.
    """

    index: int
    score: float
    document: Content
    truncated: bool = False
    span: Span | None = None
    reranked: bool = True
    error: str | None = None


@dataclass(frozen=True)
class Scored:
    """What a backend reports for one call: a score per document, and what it cut.

    ``truncated`` and ``spans`` are per document, in input order; empty lists
    mean "nothing to report" (every document read whole).
    """

    scores: list[float]
    truncated: list[bool] = field(default_factory=list)
    spans: list[Span | None] = field(default_factory=list)

    def truncated_at(self, index: int) -> bool:
        return bool(self.truncated) and self.truncated[index]

    def span_at(self, index: int) -> Span | None:
        return self.spans[index] if self.spans else None

    def select(self, positions: Sequence[int]) -> Scored:
        """The report of the documents at ``positions``, in that order (repeats allowed)."""
        return Scored(
            [self.scores[i] for i in positions],
            truncated=[self.truncated[i] for i in positions] if self.truncated else [],
            spans=[self.spans[i] for i in positions] if self.spans else [],
        )


def rank(
    documents: Sequence[Content],
    scores: Sequence[float],
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
    scored: Scored | None = None,
) -> list[RerankResult]:
    """Sort documents by score, highest first; ties keep input order.

    Keeps the documents whose score is at least ``score_threshold``, then the
    first ``top_n`` of them. ``scored`` (whose scores must be ``scores``) adds
    each document's ``truncated`` flag and ``span``. Arguments are assumed validated.
    """
    if len(scores) != len(documents):
        raise QwenRerankError(f"Got {len(scores)} scores for {len(documents)} documents.")
    extra = scored or Scored(list(scores))
    order = sorted(range(len(documents)), key=lambda i: -scores[i])
    results = [
        RerankResult(
            index=i,
            score=float(scores[i]),
            document=documents[i],
            truncated=extra.truncated_at(i),
            span=extra.span_at(i),
        )
        for i in order
    ]
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
            raise InvalidScoreError(
                f"Score {value!r} for document {position} is not a probability in [0, 1]: the model "
                "computed none (a NaN or infinite weight in the checkpoint, or a float16 overflow: "
                "load it in float32)."
            )
    return out
