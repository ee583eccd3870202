"""A query or document in DashScope's element form, for its multimodal reranker (``qwen3-vl-rerank``).

The reference's request holds each document as one object: ``{"text": ...}``,
``{"image": <URL or base64>}`` or ``{"video": <URL>}``. Here a document is one such
object with every key it needs (``{"image": ..., "text": ...}`` for an image with a
caption); the query is a plain string when it is text only, else the same object.

- A text is escaped (`escape_control_tokens`); several texts are joined with nothing
  between them, as the model's prompt places them side by side.
- An http(s) URL is sent as it is: the provider fetches it, nothing is fetched here.
- A local image (a path, bytes, a data URL or a PIL image) is read under the byte limit
  and sent as a base64 data URL, in one of the formats the model's row lists (a PIL image
  as PNG); another format is refused.
- A video goes by http(s) URL only; a file or a list of frames is refused.
- An object carries one image and one video: a document with more is refused.

Errors name the item (``documents[3]``), never its path, URL or bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_rerank._media_io import read_image_bytes
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import Content, ImageSource, MediaLimits, MultimodalContent, base64_image
from qwen_rerank.prompt import escape_control_tokens
from qwen_rerank.remote._parts import png_data_url
from qwen_rerank.remote._providers import HostedMedia

__all__ = ["Element", "check_text_tokens", "document_element", "query_element"]


@dataclass(frozen=True)
class Element:
    """One query or document as sent, with what the request limits count of it."""

    value: str | dict[str, str]
    text: str  # the text sent (escaped), whose tokens are counted
    image: bool = False
    video: bool = False


def query_element(query: Content, media: HostedMedia, limits: MediaLimits) -> Element:
    """The query: a string when it holds text only, else an object as a document is."""
    element = _element(query, media, limits, "query")
    if not element.image and not element.video:
        return Element(element.text, element.text)
    return element


def document_element(document: Content, media: HostedMedia, limits: MediaLimits, where: str) -> Element:
    """A document as an object with ``text``, ``image`` and ``video`` keys, named ``where`` in errors."""
    return _element(document, media, limits, where)


def _element(item: Content, media: HostedMedia, limits: MediaLimits, where: str) -> Element:
    if isinstance(item, str):
        text = escape_control_tokens(item)
        return Element({"text": text}, text)
    _check_counts(item, where)
    value: dict[str, str] = {}
    if item.videos:
        value["video"] = _video_url(item, where)
    if item.images:
        value["image"] = _image_url(item.images[0], media, limits, f"{where}'s image")
    text = "".join(escape_control_tokens(t) for t in item.texts)
    if item.texts or not value:
        value["text"] = text or "NULL"  # the model reads an empty item as the text "NULL"
    return Element(value, value.get("text", ""), image=bool(item.images), video=bool(item.videos))


def _check_counts(item: MultimodalContent, where: str) -> None:
    for kind, count in (("images", len(item.images)), ("videos", len(item.videos))):
        if count > 1:
            raise InvalidInputError(
                f"{where} holds {count} {kind}; DashScope's qwen3-vl-rerank takes each query and document "
                f"as one object, with one {kind[:-1]} at most. Give each its own document, or score it "
                "with LocalReranker or a vLLM server."
            )


def _video_url(item: MultimodalContent, where: str) -> str:
    video = item.videos[0]
    if video.kind != "url":
        given = "a video file" if video.kind == "path" else "a video given as frames"
        raise InvalidInputError(
            f"{where}'s video is {given}; DashScope's qwen3-vl-rerank takes a video by http(s) URL only "
            "(MP4, AVI or MOV). Give its URL, or score it with LocalReranker."
        )
    return str(video.value)


def _image_url(image: ImageSource, media: HostedMedia, limits: MediaLimits, where: str) -> str:
    if image.kind == "url":
        return str(image.value)
    if image.kind == "pil":
        return png_data_url(image.value, limits, where)
    data = read_image_bytes(image, limits, where)
    url = base64_image(base64.b64encode(data).decode("ascii"))
    kind = None if url is None else url[len("data:image/") : url.index(";")]
    if url is None or kind not in media.image_formats:
        formats = ", ".join(f.upper() for f in media.image_formats)
        raise InvalidInputError(
            f"{where} is not a {formats} image, the formats DashScope's qwen3-vl-rerank is sent here. "
            "Convert it, or give its http(s) URL."
        )
    return url


def check_text_tokens(counts: Sequence[int], cap: int | None, *, estimated: bool) -> None:
    """Refuse a document whose text is over ``cap`` tokens: the provider would cut it silently.

    A multimodal request's texts are not cut on the client (only an all-text request's are,
    with ``tokenizer=``), so the message asks to shorten the text.
    """
    how = " (bounded by its UTF-8 bytes; pass tokenizer= to count exactly)" if estimated else ""
    for k, tokens in enumerate(counts):
        if cap is not None and tokens > cap:
            raise InvalidInputError(
                f"documents[{k}]'s text has {tokens:,} tokens{how}; DashScope's qwen3-vl-rerank reads at "
                f"most {cap:,} tokens of an item and would cut the rest without saying so. Shorten the text."
            )
