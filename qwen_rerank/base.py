"""The [`Reranker`][qwen_rerank.Reranker] contract that every backend fulfils."""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from typing_extensions import Self

from qwen_rerank._chunking import LongDocuments, LongDocumentsMode, WindowPlan, plan_windows, truncated_flags
from qwen_rerank._fallback import OnError, aguarded, check_on_error, guarded
from qwen_rerank._many import (
    Progress,
    Request,
    check_instructions,
    check_pairs,
    check_requests,
    group_pairs,
    progress_bar,
)
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
from qwen_rerank.results import RerankResult, Scored, Usage, check_scores, rank

__all__ = ["Reranker"]


ProgressHook = Callable[[int, int], None]
"""Told ``(queries, documents)`` newly scored; ``documents`` counts what the backend scores
(identical documents of a request once, in chunk mode each window)."""


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
    instruction: str

    @property
    def texts(self) -> list[str]:
        return self.distinct if self.plan is None else self.plan.texts

    @property
    def request(self) -> Request:
        return self.query, self.texts


_Driver = Callable[[list[Request], str, Progress], list[list[float]]]
_AsyncDriver = Callable[[list[Request], str, Progress], Awaitable[list[list[float]]]]


class Reranker(ABC):
    """Scores how well documents answer a query, with a Qwen3-Reranker model.

    One pipeline serves every public call: a batch of ``(query, documents,
    instruction)`` requests is checked, identical documents are folded, long
    documents are cut or windowed, the backend scores, scores are checked and
    mapped back, and rankings are made. [`score`][qwen_rerank.Reranker.score]
    and [`rerank`][qwen_rerank.Reranker.rerank] are its one-request case,
    [`score_pairs`][qwen_rerank.Reranker.score_pairs] groups pairs into
    requests by query.

    Backends implement ``_score`` (and, when they have native async I/O,
    ``_ascore``; to share work between queries, ``_score_many`` and
    ``_ascore_many``). A backend that cuts prompts to a token limit tells how
    through ``_prompt_rule``; in chunk mode its ``_score`` then simply receives
    the windows as documents. Identical documents of one request reach the
    backend once, so they always tie exactly.

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

    @property
    def last_usage(self) -> Usage | None:
        """Tokens the server reported for the last call in this thread or asyncio task.

        ``None`` by default: a backend that runs the model itself, or whose
        server reports nothing, has no usage to tell. A remote backend returns
        the [`Usage`][qwen_rerank.remote.Usage] summed over the call's requests.
        """
        return None

    @property
    def served_model(self) -> str | None:
        """The model this backend scores with, as tracing and reports name it; ``None`` by default.

        The checkpoint of a local backend; the model name a remote one sends,
        or ``"<server default> at URL"`` when it leaves the choice to the server.
        """
        return None

    # -- the pipeline's steps, shared by every call -----------------------------------------------
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

    def _jobs(self, requests: list[Request], instructions: list[str | None]) -> list[_Job]:
        """The checked requests as jobs: identical documents folded, windows planned, instruction set."""
        jobs = []
        for (query, documents), instruction in zip(requests, instructions, strict=True):
            instr = instruction if instruction is not None else self.instruction
            first: dict[str, int] = {}
            where = [first.setdefault(doc, len(first)) for doc in documents]
            distinct = list(first)
            jobs.append(_Job(query, documents, distinct, where, self._windows(query, distinct, instr), instr))
        return jobs

    def _one(self, query: Any, documents: Any, instruction: Any) -> list[_Job]:
        """The one-request case's jobs, checked as ``score`` documents its arguments."""
        return self._jobs([(check_query(query), check_documents(documents))], [_instruction(instruction)])

    def _many(self, requests: Any, instruction: Any, instructions: Any = None) -> list[_Job]:
        """The many-queries case's jobs; a request without its own instruction takes ``instruction``."""
        default = _instruction(instruction)
        checked = check_requests(requests)
        own = check_instructions(instructions, len(checked), "requests")
        return self._jobs(checked, [default if mine is None else mine for mine in own])

    def _scored(self, job: _Job, raw: list[float], *, report: bool) -> Scored:
        """The checked [`Scored`][qwen_rerank.results.Scored] of ``job.documents`` from the backend's scores.

        With ``report``, truncate mode also tells which documents were cut.
        """
        if job.plan is not None:
            scored = job.plan.merge(check_scores(raw, len(job.plan.texts)))
        else:
            scores = check_scores(raw, len(job.distinct))
            rule = self._prompt_rule() if report else None
            flags = (
                None
                if rule is None
                else truncated_flags(rule[0], job.query, job.distinct, job.instruction, rule[1])
            )
            scored = Scored(scores) if flags is None else Scored(scores, truncated=flags)
        return scored if len(job.distinct) == len(job.documents) else scored.select(job.where)

    def _run(
        self, jobs: list[_Job], progress: Progress | None, *, report: bool, many: bool = True
    ) -> list[Scored]:
        """The pipeline: score the jobs, each instruction's requests in one backend call.

        ``many=False`` is the one-request case: it goes to the backend's
        ``_score`` rather than ``_score_many``, and its errors name no request.
        """
        batches, done = _batches(jobs, progress)
        raw: dict[int, list[float]] = {}
        for instruction, positions in batches.items():
            requests = [jobs[i].request for i in positions]
            drive = self._score_many if many else _single(self._score)
            raw.update(
                zip(positions, _checked_count(drive(requests, instruction, done), positions), strict=True)
            )
        return self._finish_jobs(jobs, raw, report=report, many=many)

    async def _arun(
        self, jobs: list[_Job], progress: Progress | None, *, report: bool, many: bool = True
    ) -> list[Scored]:
        """Async ``_run``."""
        batches, done = _batches(jobs, progress)
        raw: dict[int, list[float]] = {}
        for instruction, positions in batches.items():
            requests = [jobs[i].request for i in positions]
            drive = self._ascore_many if many else _asingle(self._ascore)
            scores = await drive(requests, instruction, done)
            raw.update(zip(positions, _checked_count(scores, positions), strict=True))
        if not many:
            return self._finish_jobs(jobs, raw, report=report, many=many)
        # Many requests: checking and merging thousands of scores would stall the event loop.
        return await asyncio.to_thread(self._finish_jobs, jobs, raw, report=report, many=many)

    def _finish_jobs(
        self, jobs: list[_Job], raw: dict[int, list[float]], *, report: bool, many: bool
    ) -> list[Scored]:
        out = []
        for position, job in enumerate(jobs):
            if not job.documents:
                out.append(Scored([]))
                continue
            try:
                out.append(self._scored(job, raw[position], report=report))
            except QwenRerankError as exc:
                if not many:
                    raise
                raise QwenRerankError(f"requests[{position}]: {exc}") from exc
        return out

    # -- what backends implement ----------------------------------------------------------------
    @abstractmethod
    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Score validated, non-empty input; one score per document, in input order."""

    async def _ascore(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Async twin of ``_score``. The default runs ``_score`` in a worker thread."""
        return await asyncio.to_thread(self._score, query, documents, instruction)

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

    # -- one query -------------------------------------------------------------------------------
    def score(self, query: str, documents: Sequence[str], *, instruction: str | None = None) -> list[float]:
        """Relevance of each document to ``query``, in input order.

        Each score is the model's probability of "yes", in [0, 1]. An empty
        ``documents`` returns ``[]`` without touching the model. ``instruction``
        overrides the instance's instruction for this call only.

        Raises:
            InvalidInputError: ``query`` or ``instruction`` is not a str, or
                ``documents`` is not a sequence of str.
        """
        jobs = self._one(query, documents, instruction)
        if not jobs[0].documents:
            return []
        with rerank_span(self, jobs[0].query, jobs[0].documents, None, name="qwen_rerank.score") as trace:
            return trace.scored(self._run(jobs, None, report=False, many=False)[0])

    async def ascore(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None
    ) -> list[float]:
        """Async [`score`][qwen_rerank.Reranker.score]; it does not block the event loop."""
        jobs = self._one(query, documents, instruction)
        if not jobs[0].documents:
            return []
        with rerank_span(self, jobs[0].query, jobs[0].documents, None, name="qwen_rerank.score") as trace:
            return trace.scored((await self._arun(jobs, None, report=False, many=False))[0])

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

        Ties keep input order. Each [`RerankResult`][qwen_rerank.RerankResult]
        carries the document's input ``index``, its ``score`` and its text,
        whether it was ``truncated`` and, in chunk mode, the ``span`` of its
        best window.

        Args:
            query: The query.
            documents: The documents to rank.
            top_n: Keep at most this many results; ``None`` keeps all. A value
                larger than the number of documents returns them all.
            score_threshold: Keep only results whose score is at least this.
            instruction: Overrides the instance's instruction for this call.
            on_error: ``"raise"`` (the default) raises a backend failure;
                ``"passthrough"`` gives back the documents in the order they
                came instead, ``top_n`` applied, each with ``reranked=False``
                and the error's class in ``error`` (see ``docs/production.md``).

        Returns:
            The kept results, best first.

        Raises:
            InvalidInputError: as [`score`][qwen_rerank.Reranker.score], or ``top_n`` < 1,
                whatever ``on_error``.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        mode = check_on_error(on_error)
        jobs = self._one(query, documents, instruction)
        job = jobs[0]
        if not job.documents:
            return []
        with rerank_span(self, job.query, job.documents, n) as trace:
            call = functools.partial(self._rerank_now, jobs, n, threshold)
            return trace.done(guarded(call, job.documents, n, mode, trace.fell_back))

    def _rerank_now(self, jobs: list[_Job], n: int | None, threshold: float | None) -> list[RerankResult]:
        return _ranked(jobs, self._run(jobs, None, report=True, many=False), n, threshold)[0]

    async def _arerank_now(
        self, jobs: list[_Job], n: int | None, threshold: float | None
    ) -> list[RerankResult]:
        return _ranked(jobs, await self._arun(jobs, None, report=True, many=False), n, threshold)[0]

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
        """Async [`rerank`][qwen_rerank.Reranker.rerank]; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        mode = check_on_error(on_error)
        jobs = self._one(query, documents, instruction)
        job = jobs[0]
        if not job.documents:
            return []
        with rerank_span(self, job.query, job.documents, n) as trace:
            call = functools.partial(self._arerank_now, jobs, n, threshold)
            return trace.done(await aguarded(call, job.documents, n, mode, trace.fell_back))

    # -- many queries ------------------------------------------------------------------------------
    def score_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
        show_progress: bool = False,
        progress: ProgressHook | None = None,
    ) -> list[list[float]]:
        """[`score`][qwen_rerank.Reranker.score] for many queries at once: one score list per request.

        Each list equals what ``score(query, documents)`` returns (within float
        rounding, 1e-5 in float32), but the work is shared: a local model packs
        the prompts of all requests into its forward passes, a vLLM client sends
        the requests concurrently. Requests of different instructions are
        scored one instruction after the other.

        Args:
            requests: ``(query, documents)`` pairs.
            instruction: Overrides the instance's instruction for this call.
            instructions: Each request's own instruction, one per request;
                ``None`` (for all, or for one request) takes ``instruction``.
            show_progress: Show a tqdm bar on stderr counting documents and queries.
            progress: Called with ``(queries, documents)`` newly scored, as
                requests finish (possibly from a worker thread).

        Returns:
            One score list per request, in request order.

        Raises:
            InvalidInputError: as `score`; the message names the request,
                e.g. ``requests[3]: documents[1] must be a str, got int.``
        """
        jobs = self._many(requests, instruction, instructions)
        with (
            many_span(self, len(jobs), "qwen_rerank.score_many") as trace,
            _progress(jobs, show_progress, progress) as hook,
        ):
            return _traced_scores(trace, jobs, self._run(jobs, hook, report=False))

    async def ascore_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
        show_progress: bool = False,
        progress: ProgressHook | None = None,
    ) -> list[list[float]]:
        """Async [`score_many`][qwen_rerank.Reranker.score_many]; it does not block the event loop."""
        jobs = await asyncio.to_thread(self._many, requests, instruction, instructions)  # off the loop
        with (
            many_span(self, len(jobs), "qwen_rerank.score_many") as trace,
            _progress(jobs, show_progress, progress) as hook,
        ):
            return _traced_scores(trace, jobs, await self._arun(jobs, hook, report=False))

    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], instructions: Sequence[str | None] | None = None
    ) -> list[float]:
        """The relevance of each ``(query, document)`` pair, in input order.

        Pairs are grouped by query (and instruction) into one request each and
        scored with [`score_many`][qwen_rerank.Reranker.score_many], so a query's
        documents share its prompt prefix locally and requests run concurrently
        on a server. Each score equals ``score(query, [document])`` within float
        rounding.

        Args:
            pairs: ``(query, document)`` pairs of str.
            instructions: One instruction per pair; ``None`` (for all, or for
                one pair) uses the instance's.

        Returns:
            One score per pair, in input order.

        Raises:
            InvalidInputError: a pair is not two str, or ``instructions`` is
                not one str or ``None`` per pair (the message names the position).
        """
        checked, per_pair = check_pairs(pairs, instructions)
        requests, own, positions = group_pairs(checked, per_pair)
        return _scatter(len(checked), positions, self.score_many(requests, instructions=own))

    async def ascore_pairs(
        self, pairs: Sequence[tuple[str, str]], instructions: Sequence[str | None] | None = None
    ) -> list[float]:
        """Async [`score_pairs`][qwen_rerank.Reranker.score_pairs]; it does not block the event loop."""
        checked, per_pair = check_pairs(pairs, instructions)
        requests, own, positions = group_pairs(checked, per_pair)
        return _scatter(len(checked), positions, await self.ascore_many(requests, instructions=own))

    def rerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
    ) -> list[list[RerankResult]]:
        """[`rerank`][qwen_rerank.Reranker.rerank] for many queries at once: one ranking per request.

        ``requests`` and ``instructions`` are as in
        [`score_many`][qwen_rerank.Reranker.score_many]; ``top_n`` and
        ``score_threshold`` apply to each request. Scoring is shared as in
        ``score_many``.

        Raises:
            InvalidInputError: as [`rerank`][qwen_rerank.Reranker.rerank]; the message names the request.
        """
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        jobs = self._many(requests, instruction, instructions)
        with many_span(self, len(jobs), "qwen_rerank.rerank_many") as trace:
            return _traced(trace, jobs, _ranked(jobs, self._run(jobs, None, report=True), n, threshold), n)

    async def arerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
    ) -> list[list[RerankResult]]:
        """Async `rerank_many`; it does not block the event loop."""
        n, threshold = check_top_n(top_n), check_score_threshold(score_threshold)
        jobs = await asyncio.to_thread(self._many, requests, instruction, instructions)  # off the loop
        with many_span(self, len(jobs), "qwen_rerank.rerank_many") as trace:
            ranked = _ranked(jobs, await self._arun(jobs, None, report=True), n, threshold)
            return _traced(trace, jobs, ranked, n)

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
    """A [`Progress`][qwen_rerank._many.Progress] that reports nowhere."""


def _instruction(instruction: Any) -> str | None:
    return None if instruction is None else check_instruction(instruction, "")


def _batches(jobs: list[_Job], progress: Progress | None) -> tuple[dict[str, list[int]], Progress]:
    """The positions of the jobs with documents, by instruction; empty ones are reported done at once."""
    batches: dict[str, list[int]] = {}
    for position, job in enumerate(jobs):
        if job.documents:
            batches.setdefault(job.instruction, []).append(position)
    done = progress or _ignore
    empty = len(jobs) - sum(len(positions) for positions in batches.values())
    if empty:
        done(empty, 0)
    return batches, done


def _single(score: Callable[[str, list[str], str], list[float]]) -> _Driver:
    """The one-request case's driver: the backend's ``_score``."""

    def drive(requests: list[Request], instruction: str, progress: Progress) -> list[list[float]]:
        out = []
        for query, documents in requests:
            out.append(score(query, documents, instruction))
            progress(1, len(documents))
        return out

    return drive


def _asingle(score: Callable[[str, list[str], str], Awaitable[list[float]]]) -> _AsyncDriver:
    """Async ``_single``: the backend's ``_ascore``."""

    async def drive(requests: list[Request], instruction: str, progress: Progress) -> list[list[float]]:
        out = []
        for query, documents in requests:
            out.append(await score(query, documents, instruction))
            progress(1, len(documents))
        return out

    return drive


def _checked_count(raw: list[list[float]], positions: list[int]) -> list[list[float]]:
    if len(raw) != len(positions):
        raise QwenRerankError(f"Got {len(raw)} score lists for {len(positions)} non-empty requests.")
    return raw


def _ranked(
    jobs: list[_Job], scored: list[Scored], top_n: int | None, threshold: float | None
) -> list[list[RerankResult]]:
    return [
        rank(job.documents, part.scores, top_n=top_n, score_threshold=threshold, scored=part)
        for job, part in zip(jobs, scored, strict=True)
    ]


def _traced_scores(trace: ManyTrace, jobs: list[_Job], scored: list[Scored]) -> list[list[float]]:
    """The score lists of a many-queries call, each request told to ``trace`` as a child span."""
    if trace.recording:  # ranking every request only to describe it: not when nothing records
        ranked = [rank(job.documents, part.scores) for job, part in zip(jobs, scored, strict=True)]
        _traced(trace, jobs, ranked)
    return [part.scores for part in scored]


def _traced(
    trace: ManyTrace, jobs: list[_Job], ranked: list[list[RerankResult]], top_n: int | None = None
) -> list[list[RerankResult]]:
    """``ranked``, after telling ``trace`` each request's inputs and results as a child span."""
    trace.done([(job.query, job.documents) for job in jobs], ranked, top_n)
    return ranked


def _scatter(count: int, positions: list[list[int]], scores: list[list[float]]) -> list[float]:
    """Each group's scores put back at its pairs' positions."""
    out = [0.0] * count
    for group, group_scores in zip(positions, scores, strict=True):
        for position, score in zip(group, group_scores, strict=True):
            out[position] = score
    return out


@contextmanager
def _progress(jobs: list[_Job], show: bool, hook: ProgressHook | None) -> Iterator[Progress | None]:
    """The bar (when shown) and the caller's hook, as one progress callback; ``None`` when neither."""
    with progress_bar(len(jobs), sum(len(job.texts) for job in jobs), show) as bar:
        if bar is None or hook is None:
            yield bar or hook
            return

        def both(queries: int, documents: int) -> None:
            bar(queries, documents)
            hook(queries, documents)

        yield both
