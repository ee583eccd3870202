"""Input extraction: an adapter's documents or nodes turned into the texts to score, or a named error."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qwen_rerank._validation import check_query
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import Content, MultimodalContent

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


@dataclass(frozen=True)
class ItemMedia:
    """The images and videos an adapter found on one document or node.

    Attributes:
        images: Each image, as `qwen_rerank.media` takes one (a path, bytes, a
            data URL, an http(s) URL).
        videos: Each video, likewise.
        name: How an error names the item, such as ``"nodes[2] (ImageNode 'img')"``.
        fields: The item's fields that held them, such as ``"image_url"``.
    """

    images: tuple[Any, ...] = ()
    videos: tuple[Any, ...] = ()
    name: str = ""
    fields: str = ""


def with_media(texts: Sequence[str], media: Sequence[ItemMedia | None], multimodal: bool) -> list[Content]:
    """The documents to score: for a multimodal backend each item's images and videos with its text;
    for a text-only one the texts, so that an image with a caption is scored on its caption.

    Raises:
        InvalidInputError: A text-only backend, and an item with media but no text (named).
    """
    if not multimodal:
        for text, found in zip(texts, media, strict=True):
            if found is not None and not text:
                raise InvalidInputError(
                    f"{found.name} has no text, only {found.fields}; this reranker's model reads text only. "
                    "Give it a text (e.g. a caption), leave it out, or load a Qwen3-VL-Reranker checkpoint."
                )
        return list(texts)
    return [
        text
        if found is None
        else MultimodalContent(
            text=text or None,
            image=list(found.images) or None,
            video=list(found.videos) or None,
            where=found.name,
        )
        for text, found in zip(texts, media, strict=True)
    ]
