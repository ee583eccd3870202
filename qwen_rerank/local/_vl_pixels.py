"""Pixels for Qwen3-VL: images and frames resized, normalised and cut into patches, without torchvision.

This follows what the official reranker gets from qwen-vl-utils and the
transformers processor (which it calls with ``do_resize=False``), step by step:

- An image is laid on white if it has alpha, converted to RGB, and resized
  with PIL's bicubic filter to `smart_resize`'s size: both sides multiples of
  ``patch_size x merge_size`` (32), its area within ``[min_pixels, max_pixels]``.
- A video given as frames keeps at most ``max_frames`` of them, evenly spread
  (``numpy.linspace(..., dtype=int)``). Each frame is first resized by PIL as an
  image with twice that factor (64) and no pixel bounds to speak of, exactly
  as qwen-vl-utils does for a frame list; an odd count repeats the last frame;
  then the stack is resized as one with torch's antialiased bicubic
  interpolation (the call torchvision's ``resize`` makes) to a size bounded by
  the per-frame share of ``total_pixels``, and rounded back to 8-bit values.
  Its frames are stamped as sampled at 2 per second.
- A video file or URL (decoded by `_vl_video`) keeps `sample_count` of its
  frames, ``fps`` per second of video, at least 4 and at most ``max_frames``,
  an even number, at the indices `sampled_indices` gives
  (``torch.linspace(...).round()``); each is resized by the same torch call to
  `file_frame_size`, whose bounds are qwen-vl-utils' own for a file: the
  official reranker gives no ``total_pixels`` there, so the share of
  ``0.9 x $MODEL_SEQ_LEN`` (128,000 unless set) tokens applies, not
  `VisionSettings.total_pixels`. Its frames are stamped with their index
  divided by the stream's average frame rate, each temporal patch with the
  mean time of its first and last frame, as the transformers processor does.
- Pixels become ``(value - 255 * mean) / (255 * std)`` in float32 and are
  cut into ``temporal x patch x patch`` patches in the processor's order. An
  image is one frame, repeated to fill the temporal patch.

Resizing is where parity is won or lost: another filter moves scores by up
to 7e-3, so both resizes are the same calls the official path makes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qwen_rerank.exceptions import InvalidInputError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "PatchGeometry",
    "VisionSettings",
    "VisualInput",
    "file_frame_size",
    "frame_indices",
    "prepare_frames",
    "prepare_image",
    "resize_frames",
    "sample_count",
    "sampled_indices",
    "smart_resize",
    "video_input",
]

MAX_ASPECT_RATIO = 200
VIDEO_MIN_TOKENS = 128
VIDEO_MAX_TOKENS = 768
FRAME_LIST_FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
MODEL_SEQ_LEN = 128000
"""qwen-vl-utils' token budget of a whole video file, unless ``$MODEL_SEQ_LEN`` sets another."""


@dataclass(frozen=True)
class VisionSettings:
    """How images and videos are sized and sampled: the official reranker's settings and defaults.

    Attributes:
        min_pixels: Least pixels of an image after resizing (default 4 tokens' worth: 4 x 32 x 32).
        max_pixels: Most pixels of an image after resizing (default 1,800 tokens' worth).
        total_pixels: Pixels shared by all frames of a video given as frames
            (default 7,680 tokens' worth). The official reranker does not pass
            it for a video file or URL, whose frames share qwen-vl-utils' own
            budget instead (see `file_frame_size`).
        fps: Frames sampled per second of a video file or URL.
        max_frames: Most frames taken from one video (for a file or URL, an
            odd number is rounded down to an even one, as qwen-vl-utils does).
    """

    min_pixels: int = 4 * 32 * 32
    max_pixels: int = 1800 * 32 * 32
    total_pixels: int = 10 * 768 * 32 * 32
    fps: float = 1.0
    max_frames: int = 64


@dataclass(frozen=True)
class PatchGeometry:
    """The vision tower's patching, and the pixel normalisation, from a checkpoint's processor config."""

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255

    @property
    def factor(self) -> int:
        """Both sides of a resized image are multiples of this."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> PatchGeometry:
        """Read `preprocessor_config.json` of `folder`; defaults where a key (or the file) is missing."""
        path = Path(folder) / "preprocessor_config.json"
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        default = cls()
        return cls(
            patch_size=int(config.get("patch_size", default.patch_size)),
            merge_size=int(config.get("merge_size", default.merge_size)),
            temporal_patch_size=int(config.get("temporal_patch_size", default.temporal_patch_size)),
            image_mean=_triple(config.get("image_mean", default.image_mean)),
            image_std=_triple(config.get("image_std", default.image_std)),
            rescale_factor=float(config.get("rescale_factor", default.rescale_factor)),
        )


@dataclass(frozen=True)
class VisualInput:
    """One image or video ready for the model: its patches, grid, and (video) frame times."""

    kind: str  # "image" or "video"
    pixel_values: torch.Tensor
    grid: tuple[int, int, int]
    timestamps: tuple[float, ...] = ()

    def tokens(self, merge_size: int) -> int:
        """Placeholder tokens it takes in the prompt (timestamps and frame markers not counted)."""
        t, h, w = self.grid
        return t * h * w // merge_size**2


def smart_resize(
    height: int, width: int, factor: int, min_pixels: float, max_pixels: float, where: str = "the image"
) -> tuple[int, int]:
    """The size qwen-vl-utils resizes to: sides multiples of `factor`, area in bounds, shape kept."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InvalidInputError(
            f"{where} is {width} x {height} pixels; the model takes an aspect ratio of at most "
            f"{MAX_ASPECT_RATIO}."
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def prepare_image(image: Image, settings: VisionSettings, geometry: PatchGeometry, where: str) -> VisualInput:
    """An RGB image resized within the pixel bounds and cut into patches."""
    resized = _pil_resize(image, geometry.factor, settings.min_pixels, settings.max_pixels, where)
    frames = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).unsqueeze(0)
    patches, grid = _patchify(_normalise(frames.float(), geometry), geometry)
    return VisualInput("image", patches, grid)


def frame_indices(count: int, max_frames: int) -> list[int]:
    """Which of `count` frames a frame list keeps: all, or `max_frames` spread evenly (the official rule)."""
    if count <= max_frames:
        return list(range(count))
    return [int(k) for k in np.linspace(0, count - 1, max_frames, dtype=int).tolist()]


def prepare_frames(
    frames: list[Image], settings: VisionSettings, geometry: PatchGeometry, where: str
) -> VisualInput:
    """A video given as RGB frames (already thinned by `frame_indices`), resized and cut into patches."""
    # qwen-vl-utils resizes each frame as an image with twice the factor and its default image bounds.
    frame_factor = 2 * geometry.factor
    bounds = (4 * frame_factor**2, 16384 * frame_factor**2)
    resized = [_pil_resize(frame, frame_factor, *bounds, where) for frame in frames]
    if len({frame.size for frame in resized}) > 1:
        raise InvalidInputError(
            f"{where} has frames of different sizes; a video's frames must all be one size."
        )
    resized += [resized[-1]] * (-len(resized) % FRAME_FACTOR)
    stack = torch.from_numpy(np.stack([np.asarray(frame) for frame in resized])).permute(0, 3, 1, 2)
    count, _, height, width = stack.shape
    size = _video_size(height, width, count, settings.total_pixels, geometry, where)
    return video_input(resize_frames(stack, size), range(count), FRAME_LIST_FPS, geometry)


def sample_count(total: int, video_fps: float, settings: VisionSettings, where: str) -> int:
    """How many of a video file's `total` frames are sampled (qwen-vl-utils' ``smart_nframes``).

    ``fps`` frames per second of video, at least 4 and at most ``max_frames``
    and `total`, rounded down to an even number.

    Raises:
        InvalidInputError: That leaves fewer than 2 frames (a video of one frame).
    """
    least = math.ceil(FPS_MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
    most = math.floor(settings.max_frames / FRAME_FACTOR) * FRAME_FACTOR
    wanted = min(min(max(total / video_fps * settings.fps, least), most), total)
    count = math.floor(wanted / FRAME_FACTOR) * FRAME_FACTOR
    if not FRAME_FACTOR <= count <= total:
        raise InvalidInputError(
            f"{where} has {total} frame(s); a video needs at least {FRAME_FACTOR} to sample "
            f"(max_frames={settings.max_frames})."
        )
    return count


def sampled_indices(total: int, count: int) -> list[int]:
    """Which `count` of `total` frames are sampled: evenly spread, rounded (qwen-vl-utils' rule)."""
    indices: list[int] = torch.linspace(0, total - 1, count).round().long().tolist()
    return indices


def file_frame_size(
    height: int, width: int, count: int, geometry: PatchGeometry, where: str
) -> tuple[int, int]:
    """The size each of `count` frames of a video file is resized to (no ``total_pixels`` given)."""
    budget = int(float(os.environ.get("MODEL_SEQ_LEN", MODEL_SEQ_LEN))) * geometry.factor**2 * 0.9
    return _video_size(height, width, count, budget, geometry, where)


def _video_size(
    height: int, width: int, count: int, total_pixels: float, geometry: PatchGeometry, where: str
) -> tuple[int, int]:
    """qwen-vl-utils' size for `count` frames sharing `total_pixels`, each within the video bounds."""
    min_pixels = VIDEO_MIN_TOKENS * geometry.factor**2
    max_pixels = max(
        min(VIDEO_MAX_TOKENS * geometry.factor**2, total_pixels / count * FRAME_FACTOR),
        int(min_pixels * 1.05),
    )
    return smart_resize(height, width, geometry.factor, min_pixels, max_pixels, where)


def video_input(
    video: torch.Tensor, indices: Sequence[int], fps: float, geometry: PatchGeometry
) -> VisualInput:
    """Resized frames ``(T, C, H, W)`` cut into patches, stamped as frames `indices` of a video at `fps`.

    Each temporal patch is stamped with the mean time of its first and last
    frame, the last index repeated to fill the last patch (the processor's rule).
    """
    patches, grid = _patchify(_normalise(video, geometry), geometry)
    step = geometry.temporal_patch_size
    kept = [*indices] + [indices[-1]] * (-len(indices) % step)
    times = [k / fps for k in kept]
    stamps = tuple((times[k] + times[k + step - 1]) / 2 for k in range(0, len(kept), step))
    return VisualInput("video", patches, grid, stamps)


def _pil_resize(image: Image, factor: int, min_pixels: float, max_pixels: float, where: str) -> Image:
    from PIL import Image as PILImage

    height, width = smart_resize(image.height, image.width, factor, min_pixels, max_pixels, where)
    resized: Image = image.resize((width, height), resample=PILImage.Resampling.BICUBIC)
    return resized


def resize_frames(stack: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Frames ``(T, C, H, W)`` of uint8 resized as torchvision resizes a uint8 tensor; float values.

    Each frame is resized on its own, so frames may be resized one at a time.
    """
    out = torch.nn.functional.interpolate(
        stack.float(), size=list(size), mode="bicubic", align_corners=False, antialias=True
    )
    return out.clamp(0, 255).round().to(torch.uint8).float()


def _normalise(frames: torch.Tensor, geometry: PatchGeometry) -> torch.Tensor:
    scale = 1 / geometry.rescale_factor
    mean = torch.tensor([m * scale for m in geometry.image_mean]).view(1, 3, 1, 1)
    std = torch.tensor([s * scale for s in geometry.image_std]).view(1, 3, 1, 1)
    return (frames - mean) / std


def _patchify(frames: torch.Tensor, geometry: PatchGeometry) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Frames ``(T, C, H, W)`` as the processor's flat patches, and the ``(t, h, w)`` patch grid."""
    step, patch, merge = geometry.temporal_patch_size, geometry.patch_size, geometry.merge_size
    if pad := -frames.shape[0] % step:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    count, channels, height, width = frames.shape
    t, h, w = count // step, height // patch, width // patch
    blocks = frames.reshape(t, step, channels, h // merge, merge, patch, w // merge, merge, patch)
    blocks = blocks.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return blocks.reshape(t * h * w, channels * step * patch * patch).contiguous(), (t, h, w)


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c
