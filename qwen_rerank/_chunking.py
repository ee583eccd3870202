"""Long documents: what ``long_documents="truncate" | "chunk"`` does, as pure logic, once.

``"truncate"`` scores each document's prompt cut to ``max_length`` (the rule of
`qwen_rerank.prompt`) and reports which documents lost tokens.

``"chunk"`` is MaxP: a document whose prompt fits is scored exactly as in
truncate mode; a longer one becomes overlapping windows of its tokens, each
scored with the same prompt, and the document gets its best window's score.

The windows are planned on the body tokens (``<Document>: ...`` after the
instruction and query) of the document's whole prompt:

- the window size is ``chunk_tokens``, at most (and by default) the most body
  tokens that fit beside the instruction and query;
- windows start every ``size - overlap`` tokens, the last one ends at the
  document's end;
- the first window is the truncated document itself: the backend scores the
  whole document, which its truncation cuts to exactly truncate mode's prompt,
  so a chunked score is never below the truncated one (with the default size);
- every other window is sent as the document text it covers, ``document[start:end]``,
  with surrounding whitespace trimmed, and cut again by the backend should its
  tokens come out longer on their own.

A backend scores the window texts as plain documents (one batch, one request),
so batching, prefix reuse, caching and request splitting apply to windows
unchanged; `WindowPlan.merge` takes each document's best window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.prompt import PromptTokenizer, document_start, format_body
from qwen_rerank.results import Scored, Span

__all__ = [
    "DEFAULT_OVERLAP",
    "LongDocuments",
    "LongDocumentsMode",
    "WindowPlan",
    "plan_windows",
    "truncated_flags",
    "window_starts",
]

LongDocumentsMode = Literal["truncate", "chunk"]
DEFAULT_OVERLAP = 64


@dataclass(frozen=True)
class LongDocuments:
    """The validated ``long_documents``, ``chunk_tokens`` and ``chunk_overlap`` settings."""

    mode: LongDocumentsMode = "truncate"
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None

    @classmethod
    def of(cls, mode: Any, chunk_tokens: Any = None, chunk_overlap: Any = None) -> LongDocuments:
        """Check the three settings; each error names the value and the fix."""
        if mode not in ("truncate", "chunk"):
            raise InvalidInputError(f"long_documents must be 'truncate' or 'chunk', got {mode!r}.")
        if chunk_tokens is not None and (
            isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1
        ):
            raise InvalidInputError(
                f"chunk_tokens must be a positive int or None (the largest window that fits), "
                f"got {chunk_tokens!r}."
            )
        if chunk_overlap is not None and (
            isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int) or chunk_overlap < 0
        ):
            raise InvalidInputError(
                f"chunk_overlap must be an int >= 0 or None (64 tokens, less for small windows), "
                f"got {chunk_overlap!r}."
            )
        if chunk_tokens is not None and chunk_overlap is not None and chunk_overlap >= chunk_tokens:
            raise InvalidInputError(
                f"chunk_overlap={chunk_overlap} must be smaller than chunk_tokens={chunk_tokens}; "
                f"use at most {chunk_tokens - 1}."
            )
        if mode == "truncate" and (chunk_tokens is not None or chunk_overlap is not None):
            raise InvalidInputError(
                "chunk_tokens and chunk_overlap apply to long_documents='chunk' only; "
                "pass long_documents='chunk' or drop them."
            )
        return cls(mode, chunk_tokens, chunk_overlap)

    def window(self, fits: int) -> tuple[int, int]:
        """``(size, overlap)`` of the windows when ``fits`` body tokens fit beside the query.

        Raises:
            InvalidInputError: An explicit ``chunk_overlap`` is not smaller than
                the window: it is refused, never quietly shrunk (which would
                multiply the windows).
        """
        size = min(self.chunk_tokens or fits, fits)
        if self.chunk_overlap is None:
            return size, min(DEFAULT_OVERLAP, size // 4, size - 1)
        if self.chunk_overlap >= size:
            limit = (
                ""
                if self.chunk_tokens is None
                else f" (chunk_tokens={self.chunk_tokens} is cut to what fits)"
            )
            raise InvalidInputError(
                f"chunk_overlap={self.chunk_overlap} must be smaller than the window, which is {size} "
                f"document tokens for this query{limit}: what fits beside the instruction and query "
                f"within max_length. Use chunk_overlap at most {max(size - 1, 0)}, or leave it out "
                "(64 tokens, less for small windows)."
            )
        return size, self.chunk_overlap


def window_starts(count: int, size: int, overlap: int) -> list[int]:
    """First token of each window of ``size`` over ``count`` tokens, ``overlap`` shared by neighbours.

    The windows cover every token; the last one ends at ``count`` (it may
    overlap its neighbour by more). Needs ``0 <= overlap < size``.
    """
    stride = size - overlap
    starts = [0]
    while starts[-1] + size < count:
        starts.append(min(starts[-1] + stride, count - size))
    return starts


@dataclass(frozen=True)
class WindowPlan:
    """The texts to score for one call, and how their scores map back to the documents.

    ``texts[k]`` is scored as a document; it belongs to ``owners[k]`` and covers
    ``spans[k]`` of it (``None``: the whole document, untruncated).
    """

    count: int
    texts: list[str]
    owners: list[int]
    spans: list[Span | None]
    truncated: list[bool]

    def merge(self, scores: Sequence[float]) -> Scored:
        """Each document's best window: its score and span (the first window wins ties)."""
        best: list[float] = [-1.0] * self.count
        spans: list[Span | None] = [None] * self.count
        for owner, span, score in zip(self.owners, self.spans, scores, strict=True):
            if score > best[owner]:
                best[owner], spans[owner] = score, span
        return Scored(best, truncated=list(self.truncated), spans=spans)


def plan_windows(
    pt: PromptTokenizer,
    query: str,
    documents: Sequence[str],
    instruction: str,
    max_length: int,
    settings: LongDocuments,
) -> WindowPlan:
    """The windows of every document for chunk mode (see the module docstring)."""
    budget = pt.body_budget(max_length)
    start = document_start(query, instruction)
    plan = WindowPlan(len(documents), [], [], [], [])
    # A body of no more bytes than the budget surely fits (a token is at least one byte).
    bodies = [format_body(query, doc, instruction) for doc in documents]
    long = [i for i, body in enumerate(bodies) if len(body.encode("utf-8")) > budget]
    encoded = dict(zip(long, pt.encode_offsets([bodies[i] for i in long]), strict=True))
    for i, doc in enumerate(documents):
        ids, offsets = encoded.get(i, ((), ()))
        if len(ids) <= budget:
            _add(plan, i, doc, None)
            continue
        # Tokens that end inside the fixed part (instruction, query, "<Document>:").
        fixed = next((k for k, (_, end) in enumerate(offsets) if end > start - 1), len(ids))
        fits = budget - fixed
        if fits < 1:  # the query leaves no room for document text: truncate mode's prompt
            _add(plan, i, doc, None, truncated=True)
            continue
        spans = [(max(a - start, 0), max(b - start, 0)) for a, b in offsets[fixed:]]
        size, overlap = settings.window(fits)
        _add(plan, i, doc, (0, spans[fits - 1][1]))  # the truncated document
        seen = {(0, spans[fits - 1][1])}
        for first in window_starts(len(spans), size, overlap)[1:]:
            span = _trim(doc, spans[first][0], spans[first + size - 1][1])
            if span[0] < span[1] and span not in seen:
                seen.add(span)
                _add(plan, i, doc[span[0] : span[1]], span)
    return plan


def _add(plan: WindowPlan, owner: int, text: str, span: Span | None, *, truncated: bool = False) -> None:
    plan.texts.append(text)
    plan.owners.append(owner)
    plan.spans.append(span)
    if len(plan.truncated) == owner:
        plan.truncated.append(truncated)


def _trim(text: str, start: int, end: int) -> Span:
    """``(start, end)`` narrowed to exclude whitespace at either end."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def truncated_flags(
    pt: PromptTokenizer, query: str, documents: Sequence[str], instruction: str, max_length: int
) -> list[bool]:
    """For each document, whether truncate mode cuts its prompt to ``max_length``."""
    budget = pt.body_budget(max_length)
    bodies = [format_body(query, doc, instruction) for doc in documents]
    flags = [False] * len(documents)
    long = [i for i, body in enumerate(bodies) if len(body.encode("utf-8")) > budget]
    for i, (ids, _) in zip(long, pt.encode_offsets([bodies[i] for i in long]), strict=True):
        flags[i] = len(ids) > budget
    return flags
