"""Pure helpers of the many-queries calls: request checks and the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._validation import check_documents, check_query
from qwen_rerank.exceptions import InvalidInputError

__all__ = ["Progress", "Request", "check_requests", "progress_bar"]

Request = tuple[str, list[str]]
"""A validated request: the query and a new list of its documents."""

Progress = Callable[[int, int], None]
"""Told ``(queries, documents)`` newly scored, one call at a time (possibly from a worker thread)."""


def check_requests(requests: Any) -> list[Request]:
    """A new list of ``(query, documents)`` pairs, or `InvalidInputError` naming the bad one."""
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
            checked.append((check_query(request[0]), check_documents(request[1])))
        except InvalidInputError as exc:
            raise InvalidInputError(f"requests[{position}]: {exc}") from exc
    return checked


@contextmanager
def progress_bar(queries: int, documents: int, enabled: bool) -> Iterator[Progress | None]:
    """A tqdm bar on stderr counting documents, with queries done alongside; ``None`` when disabled."""
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
