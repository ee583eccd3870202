"""The :class:`Reranker` contract that every backend fulfils."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from typing_extensions import Self

from qwen_rerank._chunking import LongDocuments, LongDocumentsMode, WindowPlan, plan_windows, truncated_flags
from qwen_rerank._validation import (
    check_documents,
    check_instruction,
    check_query,
    check_score_threshold,
    check_top_n,
)
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, PromptTokenizer
from qwen_rerank.results import RerankResult, Scored, check_scores, rank

__all__ = ["Reranker"]


class Reranker(ABC):
    """Scores how well documents answer a query, with a Qwen3-Reranker model.

    Backends implement ``_score`` (and, when they have native async I/O,
    ``_ascore``); everything else — validation, the empty case, score checks,
    long documents, ranking — lives here, once. A backend that cuts prompts to
    a token limit tells how through ``_prompt_rule``; in chunk mode its
    ``_score`` then simply receives the windows as documents.

    Args:
        instruction: The task instruction used when a call passes none.
            Defaults to :data:`~qwen_rerank.DEFAULT_INSTRUCTION`.
        long_documents: ``"truncate"`` (the default) cuts a prompt longer than
            ``max_length`` at its end; ``"chunk"`` scores overlapping windows of
            the document and keeps the best (see ``docs/long-documents.md``).
        chunk_tokens: Chunk mode: document tokens per window; ``None`` takes
            the most that fit beside the instruction and query.
        chunk_overlap: Chunk mode: tokens neighbouring windows share; ``None``
            takes 64, or a quarter of the window when that is less.
    """

    def __init__(
        self,
        *,
        instruction: str | None = None,
        long_documents: LongDocumentsMode = "truncate",
        chunk_tokens: int | None = None,
        chunk_overlap: int | None = None,
    ) -> None:
        self.instruction: str = check_instruction(instruction, DEFAULT_INSTRUCTION)
        self._long = LongDocuments.of(long_documents, chunk_tokens, chunk_overlap)

    @property
    def long_documents(self) -> LongDocumentsMode:
        """``"truncate"`` or ``"chunk"``: what happens to a document longer than ``max_length``."""
        return self._long.mode

    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        """The tokenizer and ``max_length`` this backend cuts prompts with; ``None`` if it cuts none."""
        return None

    def _windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None:
        """Chunk mode's windows, to be scored in place of ``documents``; ``None`` in truncate mode."""
        if self._long.mode == "truncate":
            return None
        rule = self._prompt_rule()
        if rule is None:
            raise InvalidInputError(
                f"{type(self).__name__} cannot count tokens, so it cannot cut windows for "
                "long_documents='chunk'; give it a tokenizer or use long_documents='truncate'."
            )
        return plan_windows(rule[0], query, documents, instruction, rule[1], self._long)

    def _scored(
        self,
        query: str,
        documents: list[str],
        instruction: str,
        plan: WindowPlan | None,
        raw: list[float],
        *,
        report: bool,
    ) -> Scored:
        """The checked scores of ``documents`` from those of ``plan``'s windows (or of the documents).

        With ``report``, truncate mode also tells which documents were cut.
        """
        if plan is not None:
            return plan.merge(check_scores(raw, len(plan.texts)))
        scores = check_scores(raw, len(documents))
        rule = self._prompt_rule() if report else None
        if rule is None:
            return Scored(scores)
        return Scored(scores, truncated=truncated_flags(rule[0], query, documents, instruction, rule[1]))

    @abstractmethod
    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Score validated, non-empty input; one score per document, in input order."""

    async def _ascore(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Async twin of ``_score``. The default runs ``_score`` in a worker thread."""
        return await asyncio.to_thread(self._score, query, documents, instruction)

    def _prepare(self, query: Any, documents: Any, instruction: Any) -> tuple[str, list[str], str]:
        return (
            check_query(query),
            check_documents(documents),
            check_instruction(instruction, self.instruction),
        )

    def score(self, query: str, documents: Sequence[str], *, instruction: str | None = None) -> list[float]:
        """Relevance of each document to ``query``, in input order.

        Each score is the model's probability of "yes", in [0, 1]. An empty
        ``documents`` returns ``[]`` without touching the model. ``instruction``
        overrides the instance's instruction for this call only.

        Raises:
            InvalidInputError: ``query`` or ``instruction`` is not a str, or
                ``documents`` is not a sequence of str.
        """
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        plan = self._windows(q, docs, instr)
        raw = self._score(q, docs if plan is None else plan.texts, instr)
        return self._scored(q, docs, instr, plan, raw, report=False).scores

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """Async :meth:`score`; it does not block the event loop."""
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        plan = self._windows(q, docs, instr)
        raw = await self._ascore(q, docs if plan is None else plan.texts, instr)
        return self._scored(q, docs, instr, plan, raw, report=False).scores

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """Documents sorted by relevance to ``query``, highest first.

        Ties keep input order. Each :class:`RerankResult` carries the document's
        input ``index``, its ``score`` and its text, whether it was ``truncated``
        and, in chunk mode, the ``span`` of its best window.

        Args:
            top_n: Keep at most this many results; ``None`` keeps all. A value
                larger than the number of documents returns them all.
            score_threshold: Keep only results whose score is at least this.
            instruction: Overrides the instance's instruction for this call.

        Raises:
            InvalidInputError: as :meth:`score`, or ``top_n`` < 1.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        plan = self._windows(q, docs, instr)
        raw = self._score(q, docs if plan is None else plan.texts, instr)
        scored = self._scored(q, docs, instr, plan, raw, report=True)
        return rank(docs, scored.scores, top_n=n, score_threshold=threshold, scored=scored)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        plan = self._windows(q, docs, instr)
        raw = await self._ascore(q, docs if plan is None else plan.texts, instr)
        scored = self._scored(q, docs, instr, plan, raw, report=True)
        return rank(docs, scored.scores, top_n=n, score_threshold=threshold, scored=scored)

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release what the backend holds open. Safe to call more than once."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
