"""Argument checks shared by every backend and adapter. Each raises InvalidInputError."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from qwen_rerank.exceptions import InvalidInputError

# A str holding one of these code points cannot be encoded as UTF-8 (a lone UTF-16 surrogate).
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(name: str, text: str) -> str:
    """``text``, or InvalidInputError when it holds a lone surrogate, which no tokenizer or server accepts."""
    found = None if text.isascii() else _SURROGATE.search(text)
    if found is not None:
        raise InvalidInputError(
            f"{name} holds a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at position {found.start()}, "
            "which is not valid Unicode text. Decode the source with errors='replace', or remove it."
        )
    return text


def check_query(query: Any, name: str = "query") -> str:
    """``query``, or InvalidInputError when it is not a str, or is empty or whitespace only.

    The one rule for queries, followed by the Python API, the adapters, the command line and
    the demo page: the model scores how well a document answers the query, and for an empty
    query that has no meaning. ``name`` is the setting as its user spells it (``"--query"``).
    """
    if not isinstance(query, str):
        raise InvalidInputError(f"{name} must be a str, got {type(query).__name__}.")
    if not query.strip():
        raise InvalidInputError(
            f"{name} is empty{'' if not query else ' (whitespace only)'}: the reranker scores how well "
            "each document answers the query, which has no meaning for an empty one. Pass the question "
            "or search text."
        )
    return check_text("query", query)


def check_instruction(instruction: Any, default: str) -> str:
    if instruction is None:
        return default
    if not isinstance(instruction, str):
        raise InvalidInputError(f"instruction must be a str or None, got {type(instruction).__name__}.")
    return check_text("instruction", instruction)


def check_documents(documents: Any, item: Callable[[Any, str], Any] | None = None) -> list[Any]:
    """Return a new list of the documents, or raise if they are not a sequence of str.

    ``item(document, "documents[i]")``, when given, checks each document in place
    of the str rule and returns it as it is to be scored (a multimodal reranker's
    rule, `qwen_rerank.media.check_item`).
    """
    if isinstance(documents, (str, bytes, bytearray)):
        raise InvalidInputError(
            f"documents must be a sequence of str, got a bare {type(documents).__name__}; "
            "wrap a single document in a list."
        )
    if not isinstance(documents, Sequence):
        raise InvalidInputError(
            f"documents must be a sequence of str (a list or tuple), got {type(documents).__name__}."
        )
    docs = list(documents)
    if item is not None:
        return [item(doc, f"documents[{position}]") for position, doc in enumerate(docs)]
    for position, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise InvalidInputError(f"documents[{position}] must be a str, got {type(doc).__name__}.")
        check_text(f"documents[{position}]", doc)
    return docs


def check_top_n(top_n: Any, name: str = "top_n", *, unset: str = "None") -> int | None:
    """The one `top_n` rule, shared by the Python API, the command line and the demo page.

    `None` keeps every result; a positive int keeps that many of the best.
    Anything else, 0 and negatives included, is an error: 0 never means "all".

    Args:
        top_n: The value to check.
        name: The setting as its user spells it (`"--top-n"` on the command line).
        unset: How that user asks for all: `"None"` in Python, `"empty"` on the
            page, `"unset"` on the command line.

    Returns:
        `top_n`, or `None` for all.

    Raises:
        InvalidInputError: `top_n` is not `None` or a positive int.
    """
    if top_n is None:
        return None
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InvalidInputError(
            f"{name} must be a positive int or {unset}, got {top_n!r}. Leave it {unset} to keep all."
        )
    return top_n


def check_score_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise InvalidInputError(f"score_threshold must be a number in [0, 1] or None, got {threshold!r}.")
    return float(threshold)


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}.")
    return value
