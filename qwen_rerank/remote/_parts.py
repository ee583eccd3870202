"""A multimodal query or document as vLLM's content parts, for a server running Qwen3-VL-Reranker.

vLLM's ``/rerank`` and ``/score`` take a query or document as a str or as ``{"content": [part,
...]}`` (its ``ScoreMultiModalParam``), each part ``{"type": "text", "text": ...}``,
``{"type": "image_url", "image_url": {"url": ...}}`` or ``{"type": "video_url", "video_url":
{"url": ...}}``. Parts go in the official order: videos, images, then texts.

An http(s) URL is sent as it is: the server fetches it. A local image (a path, bytes or a PIL
image) is read here under the byte limit and sent as a base64 data URL; a PIL image is sent as
PNG. A video goes by URL only: the server decodes it, and a list of frames has no vLLM form.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._media_io import read_image_bytes
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import Content, ImageSource, MediaLimits, VideoSource, base64_image
from qwen_rerank.prompt import escape_control_tokens

__all__ = ["content_parts", "png_data_url"]


def content_parts(item: Content, limits: MediaLimits, where: str) -> str | dict[str, Any]:
    """``item`` as vLLM takes it: text escaped as a str, a multimodal item as ``{"content": [...]}``.

    Raises:
        InvalidInputError: An image cannot be read within ``limits``, or a video is not a URL
            (the message names ``where``, never the path or URL).
    """
    if isinstance(item, str):
        return escape_control_tokens(item)
    parts = [_video(video, limits, f"{where}'s video[{k}]") for k, video in enumerate(item.videos)]
    parts += [_image(image, limits, f"{where}'s image[{k}]") for k, image in enumerate(item.images)]
    parts += [{"type": "text", "text": escape_control_tokens(text)} for text in item.texts]
    return {"content": parts or [{"type": "text", "text": "NULL"}]}


def _image(image: ImageSource, limits: MediaLimits, where: str) -> dict[str, Any]:
    if image.kind in ("url", "data_url"):
        url = image.value
    elif image.kind == "pil":
        url = png_data_url(image.value, limits, where)
    else:
        data = read_image_bytes(image, limits, where)
        url = base64_image(base64.b64encode(data).decode("ascii"))
        if url is None:
            raise InvalidInputError(
                f"{where} is not a PNG, JPEG, GIF, BMP, TIFF or WEBP file, which a server can be sent."
            )
    return {"type": "image_url", "image_url": {"url": url}}


def _video(video: VideoSource, limits: MediaLimits, where: str) -> dict[str, Any]:
    if video.kind != "url":
        raise InvalidInputError(
            f"{where} is a video {'file' if video.kind == 'path' else 'given as frames'}; a server takes "
            "a video by http(s) URL only. Give its URL, or score it with LocalReranker."
        )
    return {"type": "video_url", "video_url": {"url": video.value}}


def png_data_url(image: Any, limits: MediaLimits, where: str) -> str:
    """A PIL image as a PNG data URL, refused past ``limits.max_bytes``."""
    require("PIL.Image", "vision")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    if buffer.tell() > limits.max_bytes:
        raise InvalidInputError(f"{where} takes more than {limits.max_bytes} bytes as PNG.")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
