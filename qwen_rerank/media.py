"""Images and video in queries and documents, for Qwen3-VL-Reranker.

A query or a document is either a `str` (text, exactly as everywhere else in
qwen-rerank) or a *multimodal* item. A multimodal item is written the way
the official `Qwen3VLReranker.process` takes it, as a dict with any of the
keys `text`, `image` and `video`:

```python
{"text": "A red bicycle", "image": "photos/bike.jpg"}
{"image": ["page-1.png", "page-2.png"]}
{"video": ["frame-000.jpg", "frame-001.jpg", "frame-002.jpg"]}   # one video, as frames
{"video": "clips/demo.mp4", "text": "the demo"}
```

or as a [`MultimodalContent`][qwen_rerank.media.MultimodalContent], the
typed form every dict is checked into:

<!-- not run by the tests: a fragment (the image file is yours) -->
```python
MultimodalContent(text="A red bicycle", image="photos/bike.jpg")
```

- `text`: a `str`, or a list of them.
- `image`: one image or a list of images. An image is a local path (`str`
  or `os.PathLike`, a `file://` URL too), raw file `bytes`, a `PIL.Image.Image`,
  a base64 data URL (`data:image/png;base64,...`), or an `http(s)://` URL.
- `video`: one video or a list of videos. A video is a local path or an
  `http(s)://` URL of a video file, or a list of frames (each an image as
  above). As in the official code, a list whose first element is a frame
  (an image object, bytes, a data URL, or a path or URL ending in an image
  extension) is one video given as frames; any other list is a list of videos.

Whatever the order of the keys, the model sees the videos, then the images,
then the texts, as the official code orders them; an item with none of
them is read as the text `"NULL"`, as there. Other keys are an error (a
misspelt `"images"` would otherwise drop the image unseen).

Nothing here reads a file, decodes an image or fetches a URL: this module
only checks the shape of the input, and imports neither PIL nor torch. The
backend loads each image when it scores it, under limits on bytes, pixels
and frames, and fetches a URL only when its user opted in (`allow_urls=True`).
The reprs of these objects name the kind of each source, never its content
or its path.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from qwen_rerank._validation import check_text
from qwen_rerank.exceptions import InvalidInputError

__all__ = [
    "DEFAULT_VL_INSTRUCTION",
    "IMAGE_EXTENSIONS",
    "Content",
    "ImageSource",
    "Item",
    "MediaLimits",
    "MultimodalContent",
    "VideoSource",
    "as_content",
    "base64_image",
    "check_item",
    "describe",
    "fold_key",
    "image_source",
    "is_multimodal",
    "video_source",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tiff", ".svg"})
"""The extensions by which a path or URL in a `video` list is read as a frame (the official list)."""


@dataclass(frozen=True)
class MediaLimits:
    """Limits on what one image or video may cost to read, for a local Qwen3-VL-Reranker.

    Pass it as `LocalReranker(..., media_limits=MediaLimits(...))`.

    Attributes:
        max_bytes: The most bytes of one image file, payload or download (default 32 MiB).
        max_pixels: The most pixels (width x height) one image or one video
            frame may declare (default 64 million: an 8000 x 8000 photo).
            Checked from the header, before decoding.
        allow_urls: Fetch `http(s)://` images and videos. Off by default: a URL
            in a document then raises instead of being fetched.
        url_timeout: Seconds allowed for one download.
        max_video_bytes: The most bytes of one video file or download
            (default 256 MiB). Checked before decoding.
        max_video_frames: The most frames one video file or URL may hold
            (default 18,000: ten minutes at 30 frames a second). All of them
            are decoded to find the frames sampled, so this bounds the work;
            checked against the header before decoding, and while decoding.
    """

    max_bytes: int = 32 * 2**20
    max_pixels: int = 64_000_000
    allow_urls: bool = False
    url_timeout: float = 30.0
    max_video_bytes: int = 256 * 2**20
    max_video_frames: int = 18_000


DEFAULT_VL_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
"""The official instruction of Qwen3-VL-Reranker, used when a call gives none."""

ImageKind = Literal["path", "bytes", "pil", "data_url", "url"]
VideoKind = Literal["path", "url", "frames"]

_KEYS = ("text", "image", "video")


@dataclass(frozen=True, repr=False)
class ImageSource:
    """One image, and where its bytes come from.

    Attributes:
        kind: `"path"` (a local file), `"bytes"` (the file's bytes),
            `"pil"` (a `PIL.Image.Image`), `"data_url"` (a base64 data URL)
            or `"url"` (an `http(s)://` URL).
        value: The source itself: a `str` path or URL, `bytes`, or the image object.
    """

    kind: ImageKind
    value: Any

    def __repr__(self) -> str:
        return f"ImageSource(kind={self.kind!r})"


@dataclass(frozen=True, repr=False)
class VideoSource:
    """One video: a file (`"path"`), an `http(s)://` URL (`"url"`), or its frames (`"frames"`).

    Attributes:
        kind: `"path"`, `"url"` or `"frames"`.
        value: The `str` path or URL, or, for `"frames"`, a tuple of
            [`ImageSource`][qwen_rerank.media.ImageSource].
    """

    kind: VideoKind
    value: Any

    def __repr__(self) -> str:
        if self.kind == "frames":
            return f"VideoSource(kind='frames', frames={len(self.value)})"
        return f"VideoSource(kind={self.kind!r})"


ImageLike = Union[str, "os.PathLike[str]", bytes, ImageSource, Any]
VideoLike = Union[str, "os.PathLike[str]", Sequence[ImageLike], VideoSource]


@dataclass(frozen=True, init=False, repr=False)
class MultimodalContent:
    """A query or document made of text, images and videos, checked.

    Takes the same `text`, `image` and `video` values as the dict form (see
    the module's documentation) and keeps them as tuples of texts,
    [`ImageSource`][qwen_rerank.media.ImageSource] and
    [`VideoSource`][qwen_rerank.media.VideoSource].

    Example:
        ```python
        from qwen_rerank.media import MultimodalContent

        page = MultimodalContent(text="Invoice, page 2", image="scans/invoice-2.png")
        page.images   # (ImageSource(kind='path'),)
        ```

    Raises:
        InvalidInputError: A value of the wrong type, an empty list of frames,
            or a text that is not valid Unicode.
    """

    texts: tuple[str, ...]
    images: tuple[ImageSource, ...]
    videos: tuple[VideoSource, ...]

    def __init__(
        self,
        text: str | Sequence[str] | None = None,
        image: ImageLike | Sequence[ImageLike] | None = None,
        video: VideoLike | Sequence[VideoLike] | None = None,
        *,
        where: str = "content",
    ) -> None:
        object.__setattr__(self, "texts", _texts(text, where))
        object.__setattr__(self, "images", _images(image, where))
        object.__setattr__(self, "videos", _videos(video, where))

    @property
    def is_empty(self) -> bool:
        """No text, image or video: the model reads it as the text `"NULL"`."""
        return not (self.texts or self.images or self.videos)

    @property
    def has_media(self) -> bool:
        """At least one image or video."""
        return bool(self.images or self.videos)

    def __repr__(self) -> str:
        return (
            f"MultimodalContent(texts={len(self.texts)}, images={len(self.images)}, "
            f"videos={len(self.videos)})"
        )


Content = str | MultimodalContent
"""A checked query or document: text, or a `MultimodalContent`."""

Item = str | Mapping[str, Any] | MultimodalContent
"""A query or document as a caller gives it: text, an official dict, or a `MultimodalContent`."""


def is_multimodal(value: Any) -> bool:
    """Whether `value` is written as a multimodal item (a mapping or a `MultimodalContent`), not text."""
    return isinstance(value, (MultimodalContent, Mapping))


def as_content(value: Any, *, where: str) -> str | MultimodalContent:
    """A query or document checked: a `str` as it is, a dict as a `MultimodalContent`.

    Args:
        value: A `str`, a dict with `text`/`image`/`video` keys, or a `MultimodalContent`.
        where: How error messages name the value, such as `"documents[3]"`.

    Raises:
        InvalidInputError: `value` is none of these, a dict has another key, or a
            value inside it has the wrong type.
    """
    if isinstance(value, str):
        return check_text(where, value)
    if isinstance(value, MultimodalContent):
        return value
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in _KEYS]
        if unknown:
            names = ", ".join(repr(key) if isinstance(key, str) else type(key).__name__ for key in unknown)
            raise InvalidInputError(
                f"{where} has the key(s) {names}; a multimodal item takes only 'text', 'image' and 'video'."
            )
        return MultimodalContent(value.get("text"), value.get("image"), value.get("video"), where=where)
    raise InvalidInputError(
        f"{where} must be a str, a dict with 'text', 'image' and/or 'video' keys, or a "
        f"MultimodalContent; got {type(value).__name__}."
    )


def check_item(value: Any, where: str, *, media: bool) -> Content:
    """A query or document checked for a reranker that reads media (`media=True`) or text only.

    Args:
        value: The query or document as the caller gave it.
        where: How error messages name it, such as `"documents[3]"`.
        media: Whether the reranker scores images and video (a Qwen3-VL-Reranker).

    Raises:
        InvalidInputError: `value` is not a str (nor, with `media`, a
            multimodal item), or a multimodal item goes to a text-only reranker.
    """
    if isinstance(value, str):
        return check_text(where, value)
    if not media:
        if is_multimodal(value):
            raise InvalidInputError(
                f"{where} is a multimodal item (a dict or MultimodalContent), but this reranker's model "
                "reads text only. Load a Qwen3-VL-Reranker checkpoint (such as "
                "Qwen/Qwen3-VL-Reranker-2B) to score images and video, or pass a str."
            )
        raise InvalidInputError(f"{where} must be a str, got {type(value).__name__}.")
    return as_content(value, where=where)


def describe(content: Content) -> str:
    """The text of `content`, each image and video shown as `<image>` or `<video>` (for traces)."""
    if isinstance(content, str):
        return content
    marks = ["<video>"] * len(content.videos) + ["<image>"] * len(content.images)
    return "\n".join([*marks, *content.texts])


def fold_key(content: Content) -> Hashable:
    """What identical queries or documents share, so that each is scored once.

    Text is its own key, as is a multimodal item whose sources hash (paths,
    bytes, URLs); an item holding a `PIL.Image` is a key only to itself.
    """
    if isinstance(content, str):
        return content
    try:
        hash(content)
    except TypeError:
        return ("item", id(content))
    return ("content", content)


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}\s*")


def base64_image(text: str) -> str | None:
    """`text` as a data URL when it is an image in base64, else `None`.

    An image stored as a document's text, in base64, is how LangChain's
    multimodal vector stores (`Chroma.add_images`) and its multimodal RAG
    recipes keep images. A data URL (`data:image/...;base64,...`) is taken as
    it is; plain base64 is an image when its first bytes are those of a PNG,
    JPEG, GIF, BMP, TIFF or WEBP file. Nothing beyond the first bytes is decoded.
    """
    if text.startswith("data:image/") and ";base64," in text[:100]:
        return text
    if len(text) < 32 or not _BASE64.fullmatch(text[:4096]):
        return None
    try:
        head = base64.b64decode("".join(text[:64].split())[:32], validate=True)
    except (binascii.Error, ValueError):
        return None
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "webp"
    return None if kind is None else f"data:image/{kind};base64,{''.join(text.split())}"


def _texts(text: Any, where: str) -> tuple[str, ...]:
    if text is None:
        return ()
    items = [text] if isinstance(text, str) else text
    if not isinstance(items, (list, tuple)):
        raise InvalidInputError(f"{where}'s text must be a str or a list of str, got {type(text).__name__}.")
    for k, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"{where}'s text[{k}] must be a str, got {type(item).__name__}.")
        check_text(f"{where}'s text[{k}]", item)
    return tuple(items)


def _images(image: Any, where: str) -> tuple[ImageSource, ...]:
    if image is None:
        return ()
    items = image if isinstance(image, (list, tuple)) else [image]
    return tuple(image_source(item, f"{where}'s image[{k}]") for k, item in enumerate(items))


def _videos(video: Any, where: str) -> tuple[VideoSource, ...]:
    if video is None:
        return ()
    if isinstance(video, VideoSource) or not isinstance(video, (list, tuple)) or _is_frame_list(video):
        return (video_source(video, f"{where}'s video[0]"),)
    return tuple(video_source(item, f"{where}'s video[{k}]") for k, item in enumerate(video))


def image_source(value: Any, where: str) -> ImageSource:
    """`value` as an [`ImageSource`][qwen_rerank.media.ImageSource]; InvalidInputError if it is no image."""
    if isinstance(value, ImageSource):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not len(value):
            raise InvalidInputError(f"{where} is empty bytes, not an image.")
        return ImageSource("bytes", bytes(value))
    if _is_pil_image(value):
        return ImageSource("pil", value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return ImageSource("url", value)
        if value.startswith("data:"):
            if not value.startswith("data:image/") or ";base64," not in value[:100]:
                raise InvalidInputError(
                    f"{where} is a data URL that is not a base64 image (data:image/...;base64,...)."
                )
            return ImageSource("data_url", value)
        path = value[len("file://") :] if value.startswith("file://") else value
        if not path:
            raise InvalidInputError(f"{where} is an empty path.")
        return ImageSource("path", path)
    raise InvalidInputError(
        f"{where} must be a path, bytes, a PIL image, a base64 data URL or an http(s) URL, "
        f"got {type(value).__name__}."
    )


def video_source(value: Any, where: str) -> VideoSource:
    """`value` as a [`VideoSource`][qwen_rerank.media.VideoSource]; InvalidInputError if it is no video."""
    if isinstance(value, VideoSource):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return VideoSource("url", value)
        if value.startswith("data:"):
            raise InvalidInputError(f"{where} is a data URL; give a video as a file path, a URL or frames.")
        path = value[len("file://") :] if value.startswith("file://") else value
        if not path:
            raise InvalidInputError(f"{where} is an empty path.")
        return VideoSource("path", path)
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidInputError(f"{where} is an empty list of frames.")
        frames = tuple(image_source(frame, f"{where}'s frame[{k}]") for k, frame in enumerate(value))
        return VideoSource("frames", frames)
    raise InvalidInputError(
        f"{where} must be a video path or URL, or a list of frames, got {type(value).__name__}."
    )


def _is_frame_list(items: Sequence[Any]) -> bool:
    """The official rule: a list is one video's frames when its first element is a frame."""
    if not items:
        return False
    first = items[0]
    if isinstance(first, (bytes, bytearray, memoryview, ImageSource)) or _is_pil_image(first):
        return True
    if isinstance(first, os.PathLike):
        first = os.fspath(first)
    if isinstance(first, str):
        return first.startswith("data:image/") or _has_image_extension(first)
    return False


def _has_image_extension(path: str) -> bool:
    if path.startswith(("http://", "https://")):
        path = path.split("#", 1)[0].split("?", 1)[0]
    return os.path.splitext(path.lower())[1] in IMAGE_EXTENSIONS


def _is_pil_image(value: Any) -> bool:
    # A PIL image exists only once PIL is imported, so PIL need not be imported to ask.
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)
