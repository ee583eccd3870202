"""Video files and URLs for Qwen3-VL: decoded with PyAV, sampled and sized as the official reranker does.

The official reranker hands a video file to qwen-vl-utils, whose reader is
torchcodec or decord when one is installed and otherwise torchvision's
``read_video``. qwen-vl-utils itself depends on PyAV, and ``read_video``
decodes with PyAV: every frame of the video stream, from the start, each
turned into 8-bit RGB (``rgb24``), kept by presentation time (the later of
two frames with one time), sorted, those before time 0 left out. This module
decodes the same way with PyAV, so its frames are those the official path gets
in an install without torchcodec or decord (``pip install qwen-vl-utils`` pulls
in neither). torchcodec and decord convert to RGB with their own FFmpeg
builds and settings; on a video stored in RGB (FFV1, PNG or x264 RGB) every
decoder gives the same frames, while on a YUV video they may differ by
rounding. torchvision 0.26 and later no longer have ``read_video``; without
torchcodec or decord the official code then scores a video's pair as the text
``NULL`` (it logs the error and goes on), where this raises.

PyAV is the ``video`` extra (``pip install "qwen-rerank[video]"``), imported
only when a video file or URL is scored.

Reading is bounded by `MediaLimits`, and every refusal is an
`InvalidInputError` naming where the video sits (``documents[3]'s video[0]``),
never its path, URL or content:

- a URL is fetched only with ``allow_urls=True``, and its download is cut off
  past ``max_video_bytes``; a file larger than that is refused before it is read;
- a file is read through an object of our own, so FFmpeg sees no name or
  protocol; only common container formats are opened, and a container that
  asks to open another file or URL (a playlist, an external reference) is refused;
- a stream whose header declares a frame larger than ``max_pixels``, or more
  frames than ``max_video_frames``, is refused before any frame is decoded, and
  decoding stops as soon as it finds more frames than that, or a frame of
  another size;
- a file that is not a video, has no video stream, or breaks while decoding.

The video is decoded twice: once to count its frames and read their times,
then to keep only the sampled ones, each resized as soon as it is decoded, so
memory holds one full-size frame at a time.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from qwen_rerank._imports import require
from qwen_rerank._media_io import fetch_url
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.local._vl_pixels import (
    PatchGeometry,
    VisionSettings,
    VisualInput,
    file_frame_size,
    resize_frames,
    sample_count,
    sampled_indices,
    video_input,
)
from qwen_rerank.media import MediaLimits, VideoSource

__all__ = ["VIDEO_FORMATS", "read_video"]

VIDEO_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "ogg", "flv", "nut", "gif")
"""The container formats (FFmpeg demuxer names) opened here; others are refused unread."""


class _NestedOpen(Exception):
    """A container asked FFmpeg to open another file or URL."""


def read_video(
    source: VideoSource,
    settings: VisionSettings,
    geometry: PatchGeometry,
    limits: MediaLimits,
    where: str,
) -> VisualInput:
    """The video of a path or URL `source`, sampled, resized and cut into patches, within `limits`.

    Raises:
        InvalidInputError: See the module's documentation; the message names `where` only.
        MissingDependencyError: PyAV (the ``video`` extra) is not installed.
    """
    av = require("av", "video")
    broken = (av.FFmpegError, _NestedOpen, OSError, ValueError, EOFError, RuntimeError)
    with _open(source, limits, where) as file:
        try:
            container = av.open(
                file,
                container_options={"format_whitelist": ",".join(VIDEO_FORMATS)},
                metadata_errors="ignore",
                io_open=_refuse_nested_open,
            )
        except broken as exc:
            raise InvalidInputError(
                f"{where} is not a video, or not in a common container format ({type(exc).__name__})."
            ) from None
        with container:
            try:
                return _sample(container, settings, geometry, limits, where)
            except InvalidInputError:
                raise
            except broken as exc:
                raise InvalidInputError(f"{where} is a broken video ({type(exc).__name__}).") from None


def _sample(
    container: Any, settings: VisionSettings, geometry: PatchGeometry, limits: MediaLimits, where: str
) -> VisualInput:
    """Count the frames, choose the sampled ones, then decode and resize only those."""
    stream = _video_stream(container, limits, where)
    times = _frame_times(container, stream, limits, where)
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    if fps <= 0:
        raise InvalidInputError(f"{where} declares no frame rate.")
    count = sample_count(len(times), fps, settings, where)
    indices = sampled_indices(len(times), count)
    size = file_frame_size(stream.height, stream.width, count, geometry, where)
    frames = _decode_sampled(container, stream, {times[k] for k in indices}, size, limits, where)
    if len(frames) < len({times[k] for k in indices}):
        raise InvalidInputError(f"{where} decoded differently the second time; it is a broken video.")
    video = torch.cat([frames[times[k]] for k in indices])
    return video_input(video, indices, fps, geometry)


@contextmanager
def _open(source: VideoSource, limits: MediaLimits, where: str) -> Iterator[Any]:
    """A readable, seekable object of the video's bytes, which carries no name of it."""
    if source.kind == "url":
        yield io.BytesIO(fetch_url(source.value, limits, limits.max_video_bytes, where))
        return
    if source.kind != "path":
        raise InvalidInputError(f"{where} is a video given as {source.kind}, not a file or URL.")
    try:
        file = open(source.value, "rb")  # noqa: SIM115 (closed below, after the checks)
    except OSError as exc:
        # The OS's message names the path, which is the caller's data: only its reason goes out.
        raise InvalidInputError(
            f"{where} is a file that cannot be read ({exc.strerror or type(exc).__name__})."
        ) from None
    with file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise InvalidInputError(f"{where} is not a regular file.")
        if status.st_size > limits.max_video_bytes:
            raise InvalidInputError(
                f"{where} is a file of {status.st_size:,} bytes, over the limit of "
                f"{limits.max_video_bytes:,} bytes."
            )
        yield _Unnamed(file)


class _Unnamed:
    """A file seen through read/seek/tell only: PyAV names a container after its file's ``name``."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._file.read(size)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position: int = self._file.seek(offset, whence)
        return position

    def tell(self) -> int:
        position: int = self._file.tell()
        return position


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> Any:
    raise _NestedOpen


def _video_stream(container: Any, limits: MediaLimits, where: str) -> Any:
    """The first video stream, its declared frame size and frame count checked."""
    if not container.streams.video:
        raise InvalidInputError(f"{where} has no video stream.")
    stream = container.streams.video[0]
    width, height = stream.width, stream.height
    if width < 1 or height < 1:
        raise InvalidInputError(f"{where} declares no frame size ({width} x {height}).")
    if width * height > limits.max_pixels:
        raise InvalidInputError(
            f"{where} has frames of {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,} pixels; it was not decoded."
        )
    declared = stream.frames
    if not declared and container.duration and stream.average_rate:
        declared = int(container.duration / 1_000_000 * float(stream.average_rate))
    if declared > limits.max_video_frames:
        raise InvalidInputError(
            f"{where} declares about {declared:,} frames, over the limit of {limits.max_video_frames:,} "
            "frames; it was not decoded."
        )
    return stream


def _frames(container: Any, stream: Any, limits: MediaLimits, where: str) -> Iterator[Any]:
    """Every frame of `stream` from the start, in decoding order, each checked against the limits."""
    container.seek(0, backward=True, any_frame=False, stream=stream)
    for count, frame in enumerate(container.decode(stream), start=1):
        if count > limits.max_video_frames:
            raise InvalidInputError(
                f"{where} has more than {limits.max_video_frames:,} frames, the limit; it was not scored."
            )
        if (frame.width, frame.height) != (stream.width, stream.height):
            raise InvalidInputError(f"{where} changes its frame size mid-stream; a video must keep one size.")
        if frame.pts is None:
            raise InvalidInputError(f"{where} has frames without a presentation time.")
        yield frame


def _frame_times(container: Any, stream: Any, limits: MediaLimits, where: str) -> list[int]:
    """The presentation times of the video's frames, as read_video keeps them: distinct, from 0, sorted."""
    return sorted({frame.pts for frame in _frames(container, stream, limits, where) if frame.pts >= 0})


def _decode_sampled(
    container: Any, stream: Any, wanted: set[int], size: tuple[int, int], limits: MediaLimits, where: str
) -> dict[int, torch.Tensor]:
    """The frames at the `wanted` times, in RGB and resized to `size`: ``(1, C, H, W)`` float each."""
    kept: dict[int, torch.Tensor] = {}
    last = max(wanted)
    for frame in _frames(container, stream, limits, where):
        if frame.pts in wanted:
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).unsqueeze(0)
            kept[frame.pts] = resize_frames(rgb, size)
        elif frame.pts > last and len(kept) == len(wanted):
            break
    return kept
