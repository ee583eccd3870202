"""The one pipeline behind every [`Reranker`][qwen_rerank.Reranker] call.

A call's requests are prepared (checked, identical documents folded, long
documents windowed, instruction set), the backend scores them through its
``_score_batch`` hook one instruction at a time, and the answers are finished:
checked, mapped back to the documents, ranked and traced. The public calls are
compositions of these steps; ``Reranker`` itself only documents and forwards.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from qwen_rerank._chunking import LongDocumentsMode, WindowPlan, truncated_flags
from qwen_rerank._fallback import aguarded, check_on_error, guarded
from qwen_rerank._requests import (
    Progress,
    Request,
    check_content_request,
    check_instructions,
    check_optional_instruction,
    check_requests,
    progress_bar,
)
from qwen_rerank._tracing import ManyTrace, many_span, rerank_span
from qwen_rerank._validation import check_score_threshold, check_top_n
from qwen_rerank.exceptions import InvalidInputError, InvalidScoreError, QwenRerankError
from qwen_rerank.media import Content, fold_key
from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.results import RerankResult, Scored, check_scores, rank

__all__ = [
    "Backend",
    "PreparedRequest",
    "arerank_many",
    "arerank_one",
    "ascore_many",
    "ascore_one",
    "ascore_prepared",
    "prepare_many",
    "prepare_one",
    "prepare_requests",
    "rerank_many",
    "rerank_one",
    "scatter",
    "score_many",
    "score_one",
    "score_prepared",
]


class Backend(Protocol):
    """What the pipeline calls on a backend: the hooks that `Reranker` declares and documents."""

    instruction: str

    @property
    def multimodal(self) -> bool: ...

    @property
    def long_documents(self) -> LongDocumentsMode: ...

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]: ...

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]: ...

    def _call_scope(self, instructions: list[str]) -> AbstractContextManager[object]: ...

    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None: ...

    def _plan_windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None: ...


@dataclass(frozen=True)
class PreparedRequest:
    """One request as the backend scores it, and how its scores map back to its documents.

    ``texts`` are the distinct documents in first-seen order, or in chunk mode
    their windows; ``where[i]`` is the distinct document that ``documents[i]`` is.
    """

    query: Content
    documents: list[Content]
    distinct: list[Content]
    where: list[int]
    plan: WindowPlan | None
    instruction: str

    @property
    def texts(self) -> list[Content]:
        return self.distinct if self.plan is None else list(self.plan.texts)

    @property
    def request(self) -> Request:
        return self.query, self.texts


# -- preparing -----------------------------------------------------------------------------------
def prepare_requests(
    backend: Backend, requests: list[Request], instructions: list[str | None]
) -> list[PreparedRequest]:
    """The checked requests prepared: identical documents folded, windows planned, instruction set."""
    prepared = []
    for (query, documents), instruction in zip(requests, instructions, strict=True):
        instr = instruction if instruction is not None else backend.instruction
        first: dict[Hashable, int] = {}
        distinct: list[Content] = []
        where = []
        for doc in documents:
            position = first.setdefault(fold_key(doc), len(distinct))
            if position == len(distinct):
                distinct.append(doc)
            where.append(position)
        plan = _windows(backend, query, distinct, instr)
        prepared.append(PreparedRequest(query, documents, distinct, where, plan, instr))
    return prepared


def _all_text(query: Content, documents: list[Content]) -> bool:
    return isinstance(query, str) and all(isinstance(doc, str) for doc in documents)


def _windows(
    backend: Backend, query: Content, documents: list[Content], instruction: str
) -> WindowPlan | None:
    """The backend's windows, which only text is cut into."""
    if _all_text(query, documents):
        return backend._plan_windows(cast(str, query), cast(list[str], documents), instruction)
    if backend.long_documents == "truncate":
        return None
    raise InvalidInputError(
        "long_documents='chunk' cuts text into windows, and this request holds an image or video; "
        "use long_documents='truncate' for multimodal documents."
    )


def prepare_one(backend: Backend, query: Any, documents: Any, instruction: Any) -> list[PreparedRequest]:
    """The one-request case, checked as ``score`` documents its arguments."""
    request = check_content_request(query, documents, backend.multimodal)
    return prepare_requests(backend, [request], [check_optional_instruction(instruction)])


def prepare_many(
    backend: Backend, requests: Any, instruction: Any, instructions: Any = None
) -> list[PreparedRequest]:
    """The many-queries case; a request without its own instruction takes ``instruction``."""
    default = check_optional_instruction(instruction)
    checked = check_requests(requests, backend.multimodal)
    own = check_instructions(instructions, len(checked), "requests")
    return prepare_requests(backend, checked, [default if mine is None else mine for mine in own])


# -- scoring -------------------------------------------------------------------------------------
def score_prepared(
    backend: Backend, prepared: list[PreparedRequest], progress: Progress | None, *, report: bool, one: bool
) -> list[Scored]:
    """Score the prepared requests, each instruction's in one ``_score_batch`` call, all of them
    inside one ``_call_scope``.

    ``one`` is the one-request case: its backend gets no progress to report to, and its
    errors name no request. With ``report``, truncate mode also tells which documents were cut.
    """
    batches, done = _by_instruction(prepared, progress, one)
    raw: dict[int, list[float]] = {}
    with backend._call_scope(list(batches)):
        for instruction, positions in batches.items():
            requests = [prepared[i].request for i in positions]
            scores = backend._score_batch(requests, instruction, done)
            raw.update(zip(positions, _checked_count(scores, positions), strict=True))
    return _finish(backend, prepared, raw, report=report, one=one)


async def ascore_prepared(
    backend: Backend, prepared: list[PreparedRequest], progress: Progress | None, *, report: bool, one: bool
) -> list[Scored]:
    """Async `score_prepared`, through ``_ascore_batch``."""
    batches, done = _by_instruction(prepared, progress, one)
    raw: dict[int, list[float]] = {}
    with backend._call_scope(list(batches)):
        for instruction, positions in batches.items():
            requests = [prepared[i].request for i in positions]
            scores = await backend._ascore_batch(requests, instruction, done)
            raw.update(zip(positions, _checked_count(scores, positions), strict=True))
    if one:
        return _finish(backend, prepared, raw, report=report, one=one)
    # Many requests: checking and merging thousands of scores would stall the event loop.
    return await asyncio.to_thread(_finish, backend, prepared, raw, report=report, one=one)


def _report_nowhere(queries: int, documents: int) -> None:
    """The progress of a many-queries call that nobody watches."""


def _by_instruction(
    prepared: list[PreparedRequest], progress: Progress | None, one: bool
) -> tuple[dict[str, list[int]], Progress | None]:
    """The positions of the requests with documents, by instruction, and the progress to report to
    (``None`` in a one-request call); requests without documents are reported done at once."""
    batches: dict[str, list[int]] = {}
    for position, request in enumerate(prepared):
        if request.documents:
            batches.setdefault(request.instruction, []).append(position)
    done = None if one else progress or _report_nowhere
    empty = len(prepared) - sum(len(positions) for positions in batches.values())
    if empty and done is not None:
        done(empty, 0)
    return batches, done


def _checked_count(raw: list[list[float]], positions: list[int]) -> list[list[float]]:
    if len(raw) != len(positions):
        raise QwenRerankError(f"Got {len(raw)} score lists for {len(positions)} non-empty requests.")
    return raw


# -- finishing -----------------------------------------------------------------------------------
def _finish(
    backend: Backend, prepared: list[PreparedRequest], raw: dict[int, list[float]], *, report: bool, one: bool
) -> list[Scored]:
    out = []
    for position, request in enumerate(prepared):
        if not request.documents:
            out.append(Scored([]))
            continue
        try:
            out.append(_mapped_back(backend, request, raw[position], report=report))
        except QwenRerankError as exc:
            if one:
                raise
            kind = InvalidScoreError if isinstance(exc, InvalidScoreError) else QwenRerankError
            raise kind(f"requests[{position}]: {exc}") from exc
    return out


def _mapped_back(backend: Backend, request: PreparedRequest, raw: list[float], *, report: bool) -> Scored:
    """The checked `Scored` of ``request.documents``, from the backend's scores of ``request.texts``."""
    if request.plan is not None:
        scored = request.plan.merge(check_scores(raw, len(request.plan.texts)))
    else:
        scores = check_scores(raw, len(request.distinct))
        rule = backend._prompt_rule() if report else None
        flags = (
            None
            if rule is None or not _all_text(request.query, request.distinct)
            else truncated_flags(
                rule[0],
                cast(str, request.query),
                cast(list[str], request.distinct),
                request.instruction,
                rule[1],
            )
        )
        scored = Scored(scores) if flags is None else Scored(scores, truncated=flags)
    return scored if len(request.distinct) == len(request.documents) else scored.select(request.where)


def _ranked(
    prepared: list[PreparedRequest], scored: list[Scored], top_n: int | None, threshold: float | None
) -> list[list[RerankResult]]:
    return [
        rank(request.documents, part.scores, top_n=top_n, score_threshold=threshold, scored=part)
        for request, part in zip(prepared, scored, strict=True)
    ]


def _traced_scores(
    trace: ManyTrace, prepared: list[PreparedRequest], scored: list[Scored]
) -> list[list[float]]:
    """The score lists of a many-queries call, each request told to ``trace`` as a child span."""
    if trace.recording:  # ranking every request only to describe it: not when nothing records
        ranked = [
            rank(request.documents, part.scores) for request, part in zip(prepared, scored, strict=True)
        ]
        _traced(trace, prepared, ranked)
    return [part.scores for part in scored]


def _traced(
    trace: ManyTrace,
    prepared: list[PreparedRequest],
    ranked: list[list[RerankResult]],
    top_n: int | None = None,
) -> list[list[RerankResult]]:
    """``ranked``, after telling ``trace`` each request's inputs and results as a child span."""
    trace.done([(request.query, request.documents) for request in prepared], ranked, top_n)
    return ranked


def scatter(count: int, positions: list[list[int]], scores: list[list[float]]) -> list[float]:
    """Each group's scores put back at its pairs' positions."""
    out = [0.0] * count
    for group, group_scores in zip(positions, scores, strict=True):
        for position, score in zip(group, group_scores, strict=True):
            out[position] = score
    return out


@contextmanager
def _watched(prepared: list[PreparedRequest], show: bool, hook: Progress | None) -> Iterator[Progress | None]:
    """The bar (when shown) and the caller's hook, as one progress callback; ``None`` when neither."""
    with progress_bar(len(prepared), sum(len(request.texts) for request in prepared), show) as bar:
        if bar is None or hook is None:
            yield bar or hook
            return

        def both(queries: int, documents: int) -> None:
            bar(queries, documents)
            hook(queries, documents)

        yield both


# -- the public calls, as `Reranker` documents them ------------------------------------------------
def score_one(backend: Backend, query: Any, documents: Any, instruction: Any) -> list[float]:
    prepared = prepare_one(backend, query, documents, instruction)
    (request,) = prepared
    if not request.documents:
        return []
    with rerank_span(backend, request.query, request.documents, None, name="qwen_rerank.score") as trace:
        return trace.scored(score_prepared(backend, prepared, None, report=False, one=True)[0])


async def ascore_one(backend: Backend, query: Any, documents: Any, instruction: Any) -> list[float]:
    prepared = prepare_one(backend, query, documents, instruction)
    (request,) = prepared
    if not request.documents:
        return []
    with rerank_span(backend, request.query, request.documents, None, name="qwen_rerank.score") as trace:
        return trace.scored((await ascore_prepared(backend, prepared, None, report=False, one=True))[0])


def rerank_one(
    backend: Backend, query: Any, documents: Any, top_n: Any, threshold: Any, instruction: Any, on_error: Any
) -> list[RerankResult]:
    n, at_least = check_top_n(top_n), check_score_threshold(threshold)
    mode = check_on_error(on_error)
    prepared = prepare_one(backend, query, documents, instruction)
    (request,) = prepared
    if not request.documents:
        return []
    with rerank_span(backend, request.query, request.documents, n) as trace:
        call = functools.partial(_rerank_prepared, backend, prepared, n, at_least)
        return trace.done(guarded(call, request.documents, n, mode, trace.fell_back))


async def arerank_one(
    backend: Backend, query: Any, documents: Any, top_n: Any, threshold: Any, instruction: Any, on_error: Any
) -> list[RerankResult]:
    n, at_least = check_top_n(top_n), check_score_threshold(threshold)
    mode = check_on_error(on_error)
    prepared = prepare_one(backend, query, documents, instruction)
    (request,) = prepared
    if not request.documents:
        return []
    with rerank_span(backend, request.query, request.documents, n) as trace:
        call = functools.partial(_arerank_prepared, backend, prepared, n, at_least)
        return trace.done(await aguarded(call, request.documents, n, mode, trace.fell_back))


def _rerank_prepared(
    backend: Backend, prepared: list[PreparedRequest], n: int | None, threshold: float | None
) -> list[RerankResult]:
    return _ranked(prepared, score_prepared(backend, prepared, None, report=True, one=True), n, threshold)[0]


async def _arerank_prepared(
    backend: Backend, prepared: list[PreparedRequest], n: int | None, threshold: float | None
) -> list[RerankResult]:
    scored = await ascore_prepared(backend, prepared, None, report=True, one=True)
    return _ranked(prepared, scored, n, threshold)[0]


def score_many(
    backend: Backend, requests: Any, instruction: Any, instructions: Any, show: bool, hook: Progress | None
) -> list[list[float]]:
    prepared = prepare_many(backend, requests, instruction, instructions)
    with (
        many_span(backend, len(prepared), "qwen_rerank.score_many") as trace,
        _watched(prepared, show, hook) as progress,
    ):
        return _traced_scores(
            trace, prepared, score_prepared(backend, prepared, progress, report=False, one=False)
        )


async def ascore_many(
    backend: Backend, requests: Any, instruction: Any, instructions: Any, show: bool, hook: Progress | None
) -> list[list[float]]:
    # Checking and preparing many requests would stall the event loop.
    prepared = await asyncio.to_thread(prepare_many, backend, requests, instruction, instructions)
    with (
        many_span(backend, len(prepared), "qwen_rerank.score_many") as trace,
        _watched(prepared, show, hook) as progress,
    ):
        scored = await ascore_prepared(backend, prepared, progress, report=False, one=False)
        # A span per request, and the ranking that describes it, would stall the event loop.
        return await asyncio.to_thread(_traced_scores, trace, prepared, scored)


def rerank_many(
    backend: Backend, requests: Any, top_n: Any, threshold: Any, instruction: Any, instructions: Any
) -> list[list[RerankResult]]:
    n, at_least = check_top_n(top_n), check_score_threshold(threshold)
    prepared = prepare_many(backend, requests, instruction, instructions)
    with many_span(backend, len(prepared), "qwen_rerank.rerank_many") as trace:
        scored = score_prepared(backend, prepared, None, report=True, one=False)
        return _traced(trace, prepared, _ranked(prepared, scored, n, at_least), n)


async def arerank_many(
    backend: Backend, requests: Any, top_n: Any, threshold: Any, instruction: Any, instructions: Any
) -> list[list[RerankResult]]:
    n, at_least = check_top_n(top_n), check_score_threshold(threshold)
    # Checking and preparing many requests would stall the event loop.
    prepared = await asyncio.to_thread(prepare_many, backend, requests, instruction, instructions)
    with many_span(backend, len(prepared), "qwen_rerank.rerank_many") as trace:
        scored = await ascore_prepared(backend, prepared, None, report=True, one=False)
        ranked = _ranked(prepared, scored, n, at_least)
        if not trace.recording:
            return ranked
        # A span per request would stall the event loop.
        return await asyncio.to_thread(_traced, trace, prepared, ranked, n)
