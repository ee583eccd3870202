"""Requests as the pipeline and the backends see them: the `Request` and `Progress` types, request
and pair checks, grouping pairs into requests, and the progress bar."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._validation import check_documents, check_instruction, check_query
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import Content, check_item, fold_key

__all__ = [
    "Progress",
    "Request",
    "TextRequest",
    "check_content_request",
    "check_instructions",
    "check_optional_instruction",
    "check_pairs",
    "check_requests",
    "group_pairs",
    "progress_bar",
    "text_requests",
]

Request = tuple[Content, list[Content]]
"""A validated request: the query and a new list of its documents. Each is a `str`, or, for a
backend whose ``multimodal`` is true, a `MultimodalContent` too."""

Progress = Callable[[int, int], None]
"""Told ``(queries, documents)`` newly scored, one call at a time (possibly from a worker thread)."""


def check_content_request(query: Any, documents: Any, media: bool) -> Request:
    """One ``(query, documents)`` request checked; with ``media``, multimodal items are taken too.

    Without it a multimodal item gets an error that says which reranker reads it.
    """
    return _query(query, media), check_documents(documents, functools.partial(check_item, media=media))


def _query(query: Any, media: bool) -> Content:
    """A query checked: a str by the one query rule (`check_query`), else as a multimodal item."""
    return check_query(query) if isinstance(query, str) else check_item(query, "query", media=media)


TextRequest = tuple[str, list[str]]
"""A request of text only, as a text-only backend scores it."""


def text_requests(requests: list[Request]) -> list[TextRequest]:
    """``requests`` as text, for a text-only backend (whose requests the pipeline checked as text).

    Raises:
        InvalidInputError: A query or document is multimodal.
    """
    out: list[TextRequest] = []
    for query, documents in requests:
        texts = [doc for doc in documents if isinstance(doc, str)]
        if not isinstance(query, str) or len(texts) != len(documents):
            raise InvalidInputError("This backend scores text only; a request holds an image or video.")
        out.append((query, texts))
    return out


def check_requests(requests: Any, media: bool = False) -> list[Request]:
    """A new list of ``(query, documents)`` pairs, or `InvalidInputError` naming the bad one.

    ``media``: the backend scores images and video, so multimodal items are taken.
    """
    if isinstance(requests, (str, bytes, bytearray)) or not isinstance(requests, Sequence):
        raise InvalidInputError(
            "requests must be a sequence of (query, documents) pairs, got "
            f"{type(requests).__name__}; pass a list such as [(query, [doc, ...]), ...]."
        )
    checked: list[Request] = []
    for position, request in enumerate(requests):
        if (
            isinstance(request, (str, bytes, bytearray))
            or not isinstance(request, Sequence)
            or len(request) != 2
        ):
            raise InvalidInputError(
                f"requests[{position}] must be a (query, documents) pair, got {_describe(request)}."
            )
        try:
            checked.append(check_content_request(request[0], request[1], media))
        except InvalidInputError as exc:
            raise InvalidInputError(f"requests[{position}]: {exc}") from exc
    return checked


def check_pairs(
    pairs: Any, instructions: Any, media: bool = False
) -> tuple[list[tuple[Content, Content]], list[str | None]]:
    """New lists of the ``(query, document)`` pairs and of each pair's instruction (``None``: the default).

    ``media``: the backend scores images and video, so multimodal items are taken.

    Raises:
        InvalidInputError: ``pairs`` is not a sequence of 2-item pairs of str,
            or ``instructions`` is not ``None`` nor a sequence of str or
            ``None`` as long as ``pairs`` (the message names the position).
    """
    if isinstance(pairs, (str, bytes, bytearray)) or not isinstance(pairs, Sequence):
        raise InvalidInputError(
            f"pairs must be a list of (query, document) pairs, got {type(pairs).__name__}."
        )
    checked: list[tuple[Content, Content]] = []
    for position, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes, bytearray)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidInputError(
                f"pairs[{position}] must be a (query, document) pair, got {_describe(pair)}."
            )
        try:
            checked.append((_query(pair[0], media), _document(pair[1], media)))
        except InvalidInputError as exc:
            raise InvalidInputError(f"pairs[{position}]: {exc}") from exc
    return checked, check_instructions(instructions, len(checked), "pairs")


def _document(document: Any, media: bool) -> Content:
    return check_item(document, "the document", media=media)


def check_optional_instruction(instruction: Any) -> str | None:
    """``instruction`` checked as a call's ``instruction`` argument; ``None`` stays ``None`` (the default)."""
    return None if instruction is None else check_instruction(instruction, "")


def check_instructions(instructions: Any, count: int, what: str) -> list[str | None]:
    """One instruction (or ``None``: the default) per item of ``what``, as a new list.

    Raises:
        InvalidInputError: ``instructions`` is not ``None`` nor a sequence of
            ``count`` items, each a str or ``None``.
    """
    if instructions is None:
        return [None] * count
    if isinstance(instructions, (str, bytes, bytearray)) or not isinstance(instructions, Sequence):
        raise InvalidInputError(
            f"instructions must be a list with one instruction (or None) per item of {what}, got "
            f"{type(instructions).__name__}."
        )
    if len(instructions) != count:
        raise InvalidInputError(
            f"instructions has {len(instructions)} items for {count} {what}; give one (or None) for each."
        )
    out: list[str | None] = []
    for position, instruction in enumerate(instructions):
        try:
            out.append(check_optional_instruction(instruction))
        except InvalidInputError as exc:
            raise InvalidInputError(f"instructions[{position}]: {exc}") from exc
    return out


def group_pairs(
    pairs: list[tuple[Content, Content]], instructions: list[str | None]
) -> tuple[list[Request], list[str | None], list[list[int]]]:
    """One request per distinct (query, instruction), in order of first appearance: requests,
    their instructions, and the positions of their pairs.

    Scoring a query's documents in one request keeps the local backend's
    prefix reuse and sends a server one request per query.
    """
    groups: dict[tuple[Hashable, str | None], list[int]] = {}
    for position, ((query, _), instruction) in enumerate(zip(pairs, instructions, strict=True)):
        groups.setdefault((fold_key(query), instruction), []).append(position)
    requests: list[Request] = [
        (pairs[positions[0]][0], [pairs[i][1] for i in positions]) for positions in groups.values()
    ]
    return requests, [instruction for _, instruction in groups], list(groups.values())


@contextmanager
def progress_bar(queries: int, documents: int | None, enabled: bool) -> Iterator[Progress | None]:
    """A tqdm bar on stderr counting documents, with queries done alongside; ``None`` when disabled.

    ``documents=None`` counts without a total (when it is not known in advance).
    """
    if not enabled:
        yield None
        return
    tqdm = require("tqdm", "eval").tqdm
    total_queries = queries
    done = 0
    with tqdm(total=documents, unit="doc", desc="Reranking", file=sys.stderr) as bar:
        bar.set_postfix_str(f"0/{total_queries} queries", refresh=False)

        def advance(queries: int, documents: int) -> None:
            nonlocal done
            done += queries
            bar.set_postfix_str(f"{done}/{total_queries} queries", refresh=False)
            bar.update(documents)

        yield advance


def _describe(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return f"a {type(value).__name__} of {len(value)} items"
    return type(value).__name__
