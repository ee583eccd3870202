"""Reading images safely: bounded bytes, bounded pixels, no URL fetched without consent.

Every image a backend scores goes through `open_image`. It refuses, with an
`InvalidInputError` that names where the image sits (`documents[3]'s image[0]`)
and never its path, URL or bytes:

- an `http(s)://` URL, unless the caller opted in with `allow_urls=True`
  (a document's metadata must not make the server fetch an internal address);
- a file, payload or download larger than `max_bytes`;
- an image whose header declares more than `max_pixels` pixels, before any
  pixel is decoded (a decompression bomb: a small PNG that inflates to gigabytes);
  PIL's own `DecompressionBombError` becomes the same error;
- a file that is not an image in one of `IMAGE_FORMATS`, or is broken.

PIL is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from typing import TYPE_CHECKING, Any

import httpx

from qwen_rerank._imports import require
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import ImageSource, MediaLimits

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["IMAGE_FORMATS", "MediaLimits", "fetch_url", "open_image", "read_image_bytes", "to_rgb"]

IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
"""The formats PIL may decode here (a phone's MPO photo opens as JPEG). Others, EPS among them (PIL
runs Ghostscript on it), are refused."""


def read_image_bytes(source: ImageSource, limits: MediaLimits, where: str) -> bytes:
    """The encoded bytes of a path, bytes, data URL or URL source, within `limits.max_bytes`."""
    if source.kind == "bytes":
        data: bytes = source.value
    elif source.kind == "path":
        data = _read_file(source.value, limits.max_bytes, where)
    elif source.kind == "data_url":
        data = _decode_data_url(source.value, limits.max_bytes, where)
    elif source.kind == "url":
        data = fetch_url(source.value, limits, limits.max_bytes, where)
    else:
        raise InvalidInputError(f"{where} is a {source.kind} image, which has no encoded bytes.")
    if len(data) > limits.max_bytes:
        raise InvalidInputError(
            f"{where} is {len(data):,} bytes, over the limit of {limits.max_bytes:,} bytes."
        )
    return data


def open_image(source: ImageSource, limits: MediaLimits, where: str) -> Image:
    """The image of `source`, decoded and in RGB (transparent parts on white), within `limits`."""
    pil = require("PIL.Image", "vision")
    if source.kind == "pil":
        given: Image = source.value
        _check_pixels(given.size, limits, where)
        return to_rgb(given)
    data = read_image_bytes(source, limits, where)
    with warnings.catch_warnings():
        # Our own pixel limit decides; PIL's warning below its hard limit would only be noise.
        warnings.simplefilter("ignore", pil.DecompressionBombWarning)
        image = _decode(pil, data, limits, where)
    return to_rgb(image)


def _decode(pil: Any, data: bytes, limits: MediaLimits, where: str) -> Image:
    """Read the header, check the declared size, and only then decode the pixels."""
    try:
        image: Image = pil.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except pil.DecompressionBombError:
        raise InvalidInputError(
            f"{where} declares more pixels than PIL allows (a decompression bomb?); it was not decoded."
        ) from None
    except pil.UnidentifiedImageError:
        raise InvalidInputError(
            f"{where} is not an image, or not one of the formats {', '.join(IMAGE_FORMATS)}."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"{where} is a broken image ({type(exc).__name__}).") from None
    _check_pixels(image.size, limits, where)
    try:
        image.load()
    except pil.DecompressionBombError:
        raise InvalidInputError(f"{where} inflates past PIL's limit (a decompression bomb?).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInputError(f"{where} is a broken image ({type(exc).__name__}).") from None
    return image


def to_rgb(image: Image) -> Image:
    """`image` in RGB; an RGBA image is laid on white first, as qwen-vl-utils does."""
    pil = require("PIL.Image", "vision")
    if image.mode == "RGBA":
        canvas: Image = pil.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.split()[3])
        return canvas
    converted: Image = image.convert("RGB")
    return converted


def _check_pixels(size: tuple[int, int], limits: MediaLimits, where: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidInputError(f"{where} has no pixels ({width} x {height}).")
    if width * height > limits.max_pixels:
        raise InvalidInputError(
            f"{where} is {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,} pixels; it was not decoded."
        )


def _read_file(path: str, max_bytes: int, where: str) -> bytes:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise InvalidInputError(
                    f"{where} is a file of {size:,} bytes, over the limit of {max_bytes:,} bytes."
                )
            data = file.read(max_bytes + 1)
    except OSError as exc:
        # The OS's message names the path, which is the caller's data: only its reason goes out.
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(f"{where} is a file that cannot be read ({reason}).") from None
    return data


def _decode_data_url(url: str, max_bytes: int, where: str) -> bytes:
    payload = url.split(";base64,", 1)[1]
    if len(payload) > (max_bytes + 2) // 3 * 4 + 4:
        raise InvalidInputError(f"{where} is a data URL of more than {max_bytes:,} bytes.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{where} is a data URL whose base64 payload is not valid.") from None


def fetch_url(url: str, limits: MediaLimits, max_bytes: int, where: str) -> bytes:
    """The body of an ``http(s)://`` URL, if `limits` allow URLs; a download over `max_bytes` is cut off."""
    if not limits.allow_urls:
        raise InvalidInputError(
            f"{where} is an http(s) URL, and URLs are not fetched unless you allow it: pass "
            "allow_urls=True if the URLs come from a source you trust, or pass the file instead."
        )
    chunks: list[bytes] = []
    total = 0
    try:
        with httpx.stream("GET", url, timeout=limits.url_timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise InvalidInputError(f"{where} could not be fetched (HTTP {response.status_code}).")
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise InvalidInputError(f"{where} is a download of more than {max_bytes:,} bytes.")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        # httpx's messages carry the URL, which may hold a signed token: only the kind goes out.
        raise InvalidInputError(f"{where} could not be fetched ({type(exc).__name__}).") from None
    return b"".join(chunks)
