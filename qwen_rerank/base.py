"""The [`Reranker`][qwen_rerank.Reranker] contract that every backend fulfils."""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from typing_extensions import Self

from qwen_rerank._chunking import LongDocuments, LongDocumentsMode, WindowPlan, plan_windows, truncated_flags
from qwen_rerank._fallback import OnError, aguarded, check_on_error, guarded
from qwen_rerank._many import Progress, Request, check_requests, progress_bar
from qwen_rerank._tracing import ManyTrace, many_span, rerank_span
from qwen_rerank._validation import (
    check_documents,
    check_instruction,
    check_query,
    check_score_threshold,
    check_top_n,
)
from qwen_rerank.exceptions import InvalidInputError, QwenRerankError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, PromptTokenizer
from qwen_rerank.results import RerankResult, Scored, check_scores, rank

__all__ = ["Reranker"]


@dataclass(frozen=True)
class _Job:
    """One request on its way to the backend: what it sends, and how the answers map back.

    ``texts`` are the distinct documents in first-seen order, or in chunk mode
    their windows; ``where[i]`` is the distinct document that ``documents[i]`` is.
    """

    query: str
    documents: list[str]
    distinct: list[str]
    where: list[int]
    plan: WindowPlan | None

    @property
    def texts(self) -> list[str]:
        return self.distinct if self.plan is None else self.plan.texts


class Reranker(ABC):
    """Scores how well documents answer a query, with a Qwen3-Reranker model.

    Backends implement ``_score`` (and, when they have native async I/O,
    ``_ascore``; to share work between queries, ``_score_many`` and
    ``_ascore_many``); everything else — validation, the empty case, identical
    documents, long documents, score checks, ranking — lives here, once. A
    backend that cuts prompts to a token limit tells how through
    ``_prompt_rule``; in chunk mode its ``_score`` then simply receives the
    windows as documents. Identical documents of one request reach the backend
    once, so they always tie exactly.

    Args:
        instruction: The task instruction used when a call passes none.
            Defaults to [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION].
        long_documents: ``"truncate"`` (the default) cuts a prompt longer than
            ``max_length`` at its end; ``"chunk"`` scores overlapping windows of
            the document and keeps the best (see ``docs/long-documents.md``).
        chunk_tokens: Chunk mode: document tokens per window; ``None`` takes
            the most that fit beside the instruction and query.
        chunk_overlap: Chunk mode: tokens neighbouring windows share; ``None``
            takes 64, or a quarter of the window when that is less.

    Attributes:
        trace_content: Whether OpenTelemetry spans record the query and the
            document text (``False``, the default: ids, scores and the model
            only, since text is often private). Set it on an instance.
    """

    trace_content: bool = False

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

    def _job(self, query: str, documents: list[str], instruction: str) -> _Job:
        first: dict[str, int] = {}
        where = [first.setdefault(doc, len(first)) for doc in documents]
        distinct = list(first)
        return _Job(query, documents, distinct, where, self._windows(query, distinct, instruction))

    def _finish_job(self, job: _Job, instruction: str, raw: list[float], *, report: bool) -> Scored:
        """The checked `Scored` of ``job.documents`` from the backend's scores of ``job.texts``."""
        scored = self._scored(job.query, job.distinct, instruction, job.plan, raw, report=report)
        return scored if len(job.distinct) == len(job.documents) else scored.select(job.where)

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
        with rerank_span(self, q, docs, None, name="qwen_rerank.score") as trace:
            job = self._job(q, docs, instr)
            return trace.scored(self._finish_job(job, instr, self._score(q, job.texts, instr), report=False))

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """Async `score`; it does not block the event loop."""
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        with rerank_span(self, q, docs, None, name="qwen_rerank.score") as trace:
            job = self._job(q, docs, instr)
            raw = await self._ascore(q, job.texts, instr)
            return trace.scored(self._finish_job(job, instr, raw, report=False))

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        on_error: OnError = "raise",
    ) -> list[RerankResult]:
        """Documents sorted by relevance to ``query``, highest first.

        Ties keep input order. Each [`RerankResult`][qwen_rerank.RerankResult] carries the document's
        input ``index``, its ``score`` and its text, whether it was ``truncated``
        and, in chunk mode, the ``span`` of its best window.

        Args:
            top_n: Keep at most this many results; ``None`` keeps all. A value
                larger than the number of documents returns them all.
            score_threshold: Keep only results whose score is at least this.
            instruction: Overrides the instance's instruction for this call.
            on_error: ``"raise"`` (the default) raises a backend failure;
                ``"passthrough"`` gives back the documents in the order they
                came instead, ``top_n`` applied, each with ``reranked=False``
                and the error's class in ``error`` (see ``docs/production.md``).

        Raises:
            InvalidInputError: as `score`, or ``top_n`` < 1, whatever ``on_error``.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        mode = check_on_error(on_error)
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        with rerank_span(self, q, docs, n) as trace:
            call = functools.partial(self._rerank_now, q, docs, instr, n, threshold)
            return trace.done(guarded(call, docs, n, mode, trace.fell_back))

    def _rerank_now(
        self, query: str, docs: list[str], instr: str, n: int | None, threshold: float | None
    ) -> list[RerankResult]:
        job = self._job(query, docs, instr)
        scored = self._finish_job(job, instr, self._score(query, job.texts, instr), report=True)
        return rank(docs, scored.scores, top_n=n, score_threshold=threshold, scored=scored)

    async def _arerank_now(
        self, query: str, docs: list[str], instr: str, n: int | None, threshold: float | None
    ) -> list[RerankResult]:
        job = self._job(query, docs, instr)
        scored = self._finish_job(job, instr, await self._ascore(query, job.texts, instr), report=True)
        return rank(docs, scored.scores, top_n=n, score_threshold=threshold, scored=scored)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        on_error: OnError = "raise",
    ) -> list[RerankResult]:
        """Async `rerank`; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        mode = check_on_error(on_error)
        q, docs, instr = self._prepare(query, documents, instruction)
        if not docs:
            return []
        with rerank_span(self, q, docs, n) as trace:
            call = functools.partial(self._arerank_now, q, docs, instr, n, threshold)
            return trace.done(await aguarded(call, docs, n, mode, trace.fell_back))

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

    def _jobs(self, requests: list[Request], instruction: str) -> list[_Job]:
        return [self._job(query, documents, instruction) for query, documents in requests]

    def _score_requests(
        self, jobs: list[_Job], instruction: str, progress: Progress | None = None, *, report: bool = False
    ) -> list[Scored]:
        """Checked scores of the jobs' requests; empty ones get nothing from the backend."""
        todo, done = self._todo(jobs, progress)
        requests = [(job.query, job.texts) for job in todo]
        raw = self._score_many(requests, instruction, done) if todo else []
        return self._finish_many(jobs, instruction, raw, report=report)

    async def _ascore_requests(
        self, jobs: list[_Job], instruction: str, progress: Progress | None = None, *, report: bool = False
    ) -> list[Scored]:
        """Async `_score_requests`."""
        todo, done = self._todo(jobs, progress)
        raw = (
            await self._ascore_many([(job.query, job.texts) for job in todo], instruction, done)
            if todo
            else []
        )
        return self._finish_many(jobs, instruction, raw, report=report)

    @staticmethod
    def _todo(jobs: list[_Job], progress: Progress | None) -> tuple[list[_Job], Progress]:
        todo = [job for job in jobs if job.documents]
        done = progress or _ignore
        if len(todo) < len(jobs):
            done(len(jobs) - len(todo), 0)
        return todo, done

    def _finish_many(
        self, jobs: list[_Job], instruction: str, raw: list[list[float]], *, report: bool
    ) -> list[Scored]:
        todo = [position for position, job in enumerate(jobs) if job.documents]
        if len(raw) != len(todo):
            raise QwenRerankError(f"Got {len(raw)} score lists for {len(todo)} non-empty requests.")
        out = [Scored([]) for _ in jobs]
        for position, scores in zip(todo, raw, strict=True):
            try:
                out[position] = self._finish_job(jobs[position], instruction, scores, report=report)
            except QwenRerankError as exc:
                raise QwenRerankError(f"requests[{position}]: {exc}") from exc
        return out

    def score_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        show_progress: bool = False,
    ) -> list[list[float]]:
        """`score` for many queries at once: one score list per request, in request order.

        ``requests`` is a sequence of ``(query, documents)`` pairs. Each list
        equals what ``score(query, documents)`` returns (within float rounding,
        1e-5 in float32), but the work is shared: a local model packs the
        prompts of all requests into its forward passes, a vLLM client sends
        the requests concurrently. ``show_progress`` shows a tqdm bar on stderr
        counting documents and queries.

        Raises:
            InvalidInputError: as `score`; the message names the request,
                e.g. ``requests[3]: documents[1] must be a str, got int.``
        """
        jobs, instr = self._prepare_many(requests, instruction)
        with (
            many_span(self, len(jobs), "qwen_rerank.score_many") as trace,
            progress_bar(len(jobs), sum(len(job.texts) for job in jobs), show_progress) as progress,
        ):
            return _traced_scores(trace, jobs, self._score_requests(jobs, instr, progress))

    async def ascore_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        show_progress: bool = False,
    ) -> list[list[float]]:
        """Async `score_many`; it does not block the event loop."""
        jobs, instr = self._prepare_many(requests, instruction)
        with (
            many_span(self, len(jobs), "qwen_rerank.score_many") as trace,
            progress_bar(len(jobs), sum(len(job.texts) for job in jobs), show_progress) as progress,
        ):
            return _traced_scores(trace, jobs, await self._ascore_requests(jobs, instr, progress))

    def rerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[list[RerankResult]]:
        """`rerank` for many queries at once: one ranking per request, in request order.

        ``top_n`` and ``score_threshold`` apply to each request. Scoring is
        shared as in `score_many`.

        Raises:
            InvalidInputError: as `rerank`; the message names the request.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        jobs, instr = self._prepare_many(requests, instruction)
        with many_span(self, len(jobs), "qwen_rerank.rerank_many") as trace:
            scored = self._score_requests(jobs, instr, report=True)
            return _traced_ranks(trace, jobs, scored, n, threshold)

    async def arerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[list[RerankResult]]:
        """Async `rerank_many`; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        jobs, instr = self._prepare_many(requests, instruction)
        with many_span(self, len(jobs), "qwen_rerank.rerank_many") as trace:
            scored = await self._ascore_requests(jobs, instr, report=True)
            return _traced_ranks(trace, jobs, scored, n, threshold)

    def _prepare_many(self, requests: Any, instruction: Any) -> tuple[list[_Job], str]:
        instr = check_instruction(instruction, self.instruction)
        return self._jobs(check_requests(requests), instr), instr

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release what the backend holds open. Safe to call more than once."""

    async def aclose(self) -> None:
        """Async `close`."""
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
    """A `Progress` that reports nowhere."""


def _traced_scores(trace: ManyTrace, jobs: list[_Job], scored: list[Scored]) -> list[list[float]]:
    """The score lists of a many-queries call, each request told to ``trace`` as a child span."""
    ranked = [rank(job.documents, part.scores) for job, part in zip(jobs, scored, strict=True)]
    trace.done([(job.query, job.documents) for job in jobs], ranked)
    return [part.scores for part in scored]


def _traced_ranks(
    trace: ManyTrace, jobs: list[_Job], scored: list[Scored], n: int | None, threshold: float | None
) -> list[list[RerankResult]]:
    """The rankings of a many-queries call, each request told to ``trace`` as a child span."""
    ranked = [
        rank(job.documents, part.scores, top_n=n, score_threshold=threshold, scored=part)
        for job, part in zip(jobs, scored, strict=True)
    ]
    trace.done([(job.query, job.documents) for job in jobs], ranked, n)
    return ranked
