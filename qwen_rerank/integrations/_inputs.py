"""Input extraction: an adapter's documents or nodes turned into the texts to score, or a named error."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from qwen_rerank._validation import check_query
from qwen_rerank.exceptions import InvalidInputError

T = TypeVar("T")


def rerank_inputs(
    query: Any, items: Iterable[T], text_of: Callable[[T], object], what: str
) -> tuple[str, list[T], list[str]]:
    """The checked query, the items as a new list, and the text of each item.

    ``text_of`` returns an item's text, or raises InvalidInputError when the
    item is of the wrong kind; the message is then prefixed with ``{what}[i]``,
    so the user learns which position is wrong.

    Raises:
        InvalidInputError: ``query`` is not a str, ``items`` is a bare string,
            a bare dict or not iterable, or an item is not of the right kind
            or its content is not text.
    """
    checked = check_query(query)
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        hint = "; wrap a single document in a list" if isinstance(items, (str, Mapping)) else ""
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}{hint}.")
    listed = list(items)
    texts: list[str] = []
    for position, item in enumerate(listed):
        try:
            text = text_of(item)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{what}[{position}] {exc}") from None
        if not isinstance(text, str):
            raise InvalidInputError(
                f"{what}[{position}] has content of type {type(text).__name__}, not text; "
                "qwen-rerank scores text only."
            )
        texts.append(text)
    return checked, listed, texts


def text_with_metadata(
    content: str,
    metadata: Mapping[str, Any],
    fields: Sequence[str],
    *,
    separator: str = "\n",
    named: bool = True,
) -> str:
    """The text to score: the listed metadata fields, then ``content``, joined by ``separator``.

    Fields missing from ``metadata`` (or empty) are skipped. With ``named``
    each field reads ``name: value`` (LangChain's ``rank_fields``); without,
    only the value (Haystack's ``meta_fields_to_embed``). With no fields the
    content is returned as it is.
    """
    parts = [
        f"{name}: {metadata[name]}" if named else str(metadata[name])
        for name in fields
        if metadata.get(name) not in (None, "")
    ]
    return separator.join([*parts, content]) if parts else content
