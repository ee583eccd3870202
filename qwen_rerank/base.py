"""The [`Reranker`][qwen_rerank.Reranker] contract that every backend fulfils: the public calls,
and the hooks a backend implements. The calls run `qwen_rerank._pipeline`."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from typing_extensions import Self

from qwen_rerank import _pipeline
from qwen_rerank._chunking import LongDocuments, LongDocumentsMode, WindowPlan, plan_windows
from qwen_rerank._fallback import OnError
from qwen_rerank._requests import Progress, Request, check_pairs, group_pairs
from qwen_rerank._validation import check_instruction
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import Item
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, PromptTokenizer
from qwen_rerank.results import RerankResult, Usage

__all__ = ["Reranker"]


ProgressHook = Callable[[int, int], None]
"""Told ``(queries, documents)`` newly scored; ``documents`` counts what the backend scores
(identical documents of a request once, in chunk mode each window)."""

_HOOKS = frozenset({"_score_batch", "_ascore_batch", "_prompt_rule", "_plan_windows", "_call_scope"})
"""The private methods a backend may define in place of its base class's (see "For backend authors" below)."""


class Reranker(ABC):
    """Scores how well documents answer a query, with a Qwen3-Reranker model.

    One pipeline serves every public call: a batch of ``(query, documents,
    instruction)`` requests is checked, identical documents are folded, long
    documents are cut or windowed, the backend scores, scores are checked and
    mapped back, and rankings are made. [`score`][qwen_rerank.Reranker.score]
    and [`rerank`][qwen_rerank.Reranker.rerank] are its one-request case,
    [`score_pairs`][qwen_rerank.Reranker.score_pairs] groups pairs into
    requests by query.

    Args:
        instruction: The task instruction used when a call passes none.
            Defaults to [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION].
        long_documents: ``"truncate"`` (the default) cuts a prompt longer than
            ``max_length`` at its end; ``"chunk"`` scores overlapping windows of
            the document and keeps the best (see [Long documents](long-documents.md)).
        chunk_tokens: Chunk mode: document tokens per window; ``None`` takes
            the most that fit beside the instruction and query.
        chunk_overlap: Chunk mode: tokens neighbouring windows share; ``None``
            takes 64, or a quarter of the window when that is less.

    Attributes:
        trace_content: Whether OpenTelemetry spans record the query and the
            document text (``False``, the default: ids, scores and the model
            only, since text is often private). Set it on an instance.

    For backend authors:
        A backend implements one hook, ``_score_batch(requests, instruction,
        progress)``: it scores validated requests ``(query, documents)``, each
        with documents, that share one instruction, and returns one score list
        per request, in order, one score per document. It calls
        ``progress(queries, documents)`` as requests finish; ``progress`` is
        ``None`` in a call that takes no progress argument (``score``,
        ``rerank``), where a backend may show its own. Identical documents of
        one request reach it once, so they always tie exactly; in chunk mode
        the windows reach it as documents.

        It may also implement:

        - ``_ascore_batch``, the same as a coroutine, when it has native async
          I/O (by default ``_score_batch`` runs in a worker thread);
        - ``_prompt_rule()``: the tokenizer and ``max_length`` it cuts prompts
          with (``None`` by default: it cuts none). Truncate mode then reports
          which documents were cut, and chunk mode can plan windows;
        - ``_plan_windows(query, documents, instruction)``: chunk mode's
          windows, scored in place of ``documents`` (by default planned with
          ``_prompt_rule``; ``None`` in truncate mode);
        - ``_call_scope(instructions)``: a context manager around all the
          ``_score_batch`` calls of one public call, told their instructions
          (to refuse one before anything is scored; to hold a deadline, sum usage);
        - the properties ``last_usage`` and ``served_model``, and ``close`` and
          ``aclose`` for what it holds open.

        A class that redefines any other private name of a backend class it
        derives from is refused with a `TypeError`: no internal is a way in.
    """

    trace_content: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clashes = _redefined_internals(cls)
        if clashes:
            raise TypeError(
                f"{cls.__name__} redefines {', '.join(clashes)}, private to the class it derives from. "
                f"A backend implements the hooks {', '.join(sorted(_HOOKS))} (see Reranker's docstring)."
            )

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
    def multimodal(self) -> bool:
        """Whether this reranker scores images and video (a Qwen3-VL-Reranker); ``False`` by default.

        When it does, every query and document may be a multimodal item (see
        `qwen_rerank.media`); otherwise one gets an
        [`InvalidInputError`][qwen_rerank.exceptions.InvalidInputError] that says so.
        """
        return False

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

        The checkpoint of a local backend; the model name a remote one sends, or
        ``"<server default> at URL"`` when it leaves the choice to the server.
        """
        return None

    # -- the hooks (see "For backend authors") ------------------------------------------------------
    @abstractmethod
    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Score validated requests, each with documents; one score list per request, in order."""

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Async ``_score_batch``. The default runs ``_score_batch`` in a worker thread."""
        return await asyncio.to_thread(self._score_batch, requests, instruction, progress)

    def _call_scope(self, instructions: list[str]) -> AbstractContextManager[object]:
        """Entered around one call's ``_score_batch`` calls, which use ``instructions``; does nothing here."""
        return contextlib.nullcontext()

    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        """The tokenizer and ``max_length`` this backend cuts prompts with; ``None`` if it cuts none."""
        return None

    def _plan_windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None:
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

    # -- one query -------------------------------------------------------------------------------
    def score(self, query: Item, documents: Sequence[Item], *, instruction: str | None = None) -> list[float]:
        """Relevance of each document to ``query``, in input order.

        Each score is the model's probability of "yes", in [0, 1]. An empty
        ``documents`` returns ``[]`` without touching the model. ``instruction``
        overrides the instance's instruction for this call only.

        Raises:
            InvalidInputError: ``query`` or ``instruction`` is not a str, or
                ``documents`` is not a sequence of str.
        """
        return _pipeline.score_one(self, query, documents, instruction)

    async def ascore(
        self, query: Item, documents: Sequence[Item], *, instruction: str | None = None
    ) -> list[float]:
        """Async [`score`][qwen_rerank.Reranker.score]; it does not block the event loop."""
        return await _pipeline.ascore_one(self, query, documents, instruction)

    def rerank(
        self,
        query: Item,
        documents: Sequence[Item],
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
                and the error's class in ``error`` (see
                [Production RAG](production.md#fall-back-to-retrieval-order-instead-of-failing)).

        Returns:
            The kept results, best first.

        Raises:
            InvalidInputError: as [`score`][qwen_rerank.Reranker.score], or ``top_n`` < 1,
                whatever ``on_error``.
        """
        return _pipeline.rerank_one(self, query, documents, top_n, score_threshold, instruction, on_error)

    async def arerank(
        self,
        query: Item,
        documents: Sequence[Item],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        on_error: OnError = "raise",
    ) -> list[RerankResult]:
        """Async [`rerank`][qwen_rerank.Reranker.rerank]; it does not block the event loop."""
        return await _pipeline.arerank_one(
            self, query, documents, top_n, score_threshold, instruction, on_error
        )

    # -- many queries ------------------------------------------------------------------------------
    def score_many(
        self,
        requests: Sequence[tuple[Item, Sequence[Item]]],
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
        return _pipeline.score_many(self, requests, instruction, instructions, show_progress, progress)

    async def ascore_many(
        self,
        requests: Sequence[tuple[Item, Sequence[Item]]],
        *,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
        show_progress: bool = False,
        progress: ProgressHook | None = None,
    ) -> list[list[float]]:
        """Async [`score_many`][qwen_rerank.Reranker.score_many]; it does not block the event loop."""
        return await _pipeline.ascore_many(self, requests, instruction, instructions, show_progress, progress)

    def score_pairs(
        self, pairs: Sequence[tuple[Item, Item]], instructions: Sequence[str | None] | None = None
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
        checked, per_pair = check_pairs(pairs, instructions, self.multimodal)
        requests, own, positions = group_pairs(checked, per_pair)
        return _pipeline.scatter(len(checked), positions, self.score_many(requests, instructions=own))

    async def ascore_pairs(
        self, pairs: Sequence[tuple[Item, Item]], instructions: Sequence[str | None] | None = None
    ) -> list[float]:
        """Async [`score_pairs`][qwen_rerank.Reranker.score_pairs]; it does not block the event loop."""
        checked, per_pair = check_pairs(pairs, instructions, self.multimodal)
        requests, own, positions = group_pairs(checked, per_pair)
        return _pipeline.scatter(len(checked), positions, await self.ascore_many(requests, instructions=own))

    def rerank_many(
        self,
        requests: Sequence[tuple[Item, Sequence[Item]]],
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
        return _pipeline.rerank_many(self, requests, top_n, score_threshold, instruction, instructions)

    async def arerank_many(
        self,
        requests: Sequence[tuple[Item, Sequence[Item]]],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        instructions: Sequence[str | None] | None = None,
    ) -> list[list[RerankResult]]:
        """Async `rerank_many`; it does not block the event loop."""
        return await _pipeline.arerank_many(self, requests, top_n, score_threshold, instruction, instructions)

    def close(self) -> None:  # noqa: B027 - a hook: most backends hold nothing to release
        """Release what the backend holds open. Safe to call more than once."""

    async def aclose(self) -> None:
        """Async `close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _redefined_internals(cls: type[Reranker]) -> list[str]:
    """The private names ``cls`` defines that a backend class above it defines too, hooks aside."""
    bases = [base for base in cls.__mro__[1:] if issubclass(base, Reranker)]
    return sorted(
        name
        for name in vars(cls)
        if name.startswith("_")
        and not name.startswith("__")
        and name not in _HOOKS
        and name != "_abc_impl"  # ABCMeta's own, on every class
        and any(name in vars(base) for base in bases)
    )
