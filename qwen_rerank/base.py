"""The :class:`Reranker` contract that every backend fulfils."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from typing_extensions import Self

from qwen_rerank._many import Progress, Request, assemble, check_requests, progress_bar
from qwen_rerank._validation import (
    check_documents,
    check_instruction,
    check_query,
    check_score_threshold,
    check_top_n,
)
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.results import RerankResult, check_scores, rank

__all__ = ["Reranker"]


def _distinct(documents: list[str]) -> tuple[list[str], list[int]]:
    """The distinct documents in first-seen order, and where each input document is among them."""
    first: dict[str, int] = {}
    where = [first.setdefault(doc, len(first)) for doc in documents]
    return list(first), where


class Reranker(ABC):
    """Scores how well documents answer a query, with a Qwen3-Reranker model.

    Backends implement ``_score`` (and, when they have native async I/O,
    ``_ascore``; to share work between queries, ``_score_many`` and
    ``_ascore_many``); everything else — validation, the empty case, score checks,
    ranking — lives here, once.

    Args:
        instruction: The task instruction used when a call passes none.
            Defaults to :data:`~qwen_rerank.DEFAULT_INSTRUCTION`.
    """

    def __init__(self, *, instruction: str | None = None) -> None:
        self.instruction: str = check_instruction(instruction, DEFAULT_INSTRUCTION)

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

    def _distinct_scores(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Checked scores, each distinct document scored once: identical documents tie exactly."""
        distinct, where = _distinct(documents)
        scores = check_scores(self._score(query, distinct, instruction), len(distinct))
        return scores if len(distinct) == len(documents) else [scores[i] for i in where]

    async def _adistinct_scores(self, query: str, documents: list[str], instruction: str) -> list[float]:
        distinct, where = _distinct(documents)
        scores = check_scores(await self._ascore(query, distinct, instruction), len(distinct))
        return scores if len(distinct) == len(documents) else [scores[i] for i in where]

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
        return self._distinct_scores(q, docs, instr)

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """Async :meth:`score`; it does not block the event loop."""
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        return await self._adistinct_scores(q, docs, instr)

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
        input ``index``, its ``score`` and its text.

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
        scores = self._distinct_scores(q, docs, instr)
        return rank(docs, scores, top_n=n, score_threshold=threshold)

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
        scores = await self._adistinct_scores(q, docs, instr)
        return rank(docs, scores, top_n=n, score_threshold=threshold)

    # -- many queries per call ------------------------------------------------------------------
    def _score_many(self, requests: list[Request], instruction: str, progress: Progress) -> list[list[float]]:
        """Score validated requests, each with documents; one list per request, in order.

        Backends that can do better than one request at a time override this;
        the default calls ``_score`` per request. Call ``progress(queries,
        documents)`` as requests finish.
        """
        out = []
        for query, documents in requests:
            out.append(self._score(query, documents, instruction))
            progress(1, len(documents))
        return out

    async def _ascore_many(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        """Async twin of ``_score_many``. The default awaits ``_ascore`` per request."""
        out = []
        for query, documents in requests:
            out.append(await self._ascore(query, documents, instruction))
            progress(1, len(documents))
        return out

    def _score_requests(
        self, requests: list[Request], instruction: str, progress: Progress | None = None
    ) -> list[list[float]]:
        """Checked scores of validated requests; empty ones get ``[]`` without the backend."""
        todo = [request for request in requests if request[1]]
        report = progress or _ignore
        if len(todo) < len(requests):
            report(len(requests) - len(todo), 0)
        return assemble(requests, self._score_many(todo, instruction, report) if todo else [])

    async def _ascore_requests(
        self, requests: list[Request], instruction: str, progress: Progress | None = None
    ) -> list[list[float]]:
        """Async :meth:`_score_requests`."""
        todo = [request for request in requests if request[1]]
        report = progress or _ignore
        if len(todo) < len(requests):
            report(len(requests) - len(todo), 0)
        return assemble(requests, await self._ascore_many(todo, instruction, report) if todo else [])

    def score_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        show_progress: bool = False,
    ) -> list[list[float]]:
        """:meth:`score` for many queries at once: one score list per request, in request order.

        ``requests`` is a sequence of ``(query, documents)`` pairs. Each list
        equals what ``score(query, documents)`` returns (within float rounding,
        1e-5 in float32), but the work is shared: a local model packs the
        prompts of all requests into its forward passes, a vLLM client sends
        the requests concurrently. ``show_progress`` shows a tqdm bar on stderr
        counting documents and queries.

        Raises:
            InvalidInputError: as :meth:`score`; the message names the request,
                e.g. ``requests[3]: documents[1] must be a str, got int.``
        """
        checked, instr = self._prepare_many(requests, instruction)
        with progress_bar(len(checked), sum(len(d) for _, d in checked), show_progress) as progress:
            return self._score_requests(checked, instr, progress)

    async def ascore_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        show_progress: bool = False,
    ) -> list[list[float]]:
        """Async :meth:`score_many`; it does not block the event loop."""
        checked, instr = self._prepare_many(requests, instruction)
        with progress_bar(len(checked), sum(len(d) for _, d in checked), show_progress) as progress:
            return await self._ascore_requests(checked, instr, progress)

    def rerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[list[RerankResult]]:
        """:meth:`rerank` for many queries at once: one ranking per request, in request order.

        ``top_n`` and ``score_threshold`` apply to each request. Scoring is
        shared as in :meth:`score_many`.

        Raises:
            InvalidInputError: as :meth:`rerank`; the message names the request.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        checked, instr = self._prepare_many(requests, instruction)
        scores = self._score_requests(checked, instr)
        return [
            rank(docs, part, top_n=n, score_threshold=threshold)
            for (_, docs), part in zip(checked, scores, strict=True)
        ]

    async def arerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[list[RerankResult]]:
        """Async :meth:`rerank_many`; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        checked, instr = self._prepare_many(requests, instruction)
        scores = await self._ascore_requests(checked, instr)
        return [
            rank(docs, part, top_n=n, score_threshold=threshold)
            for (_, docs), part in zip(checked, scores, strict=True)
        ]

    def _prepare_many(self, requests: Any, instruction: Any) -> tuple[list[Request], str]:
        return check_requests(requests), check_instruction(instruction, self.instruction)

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


def _ignore(queries: int, documents: int) -> None:
    """A :data:`Progress` that reports nowhere."""
