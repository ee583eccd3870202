"""Fixtures of the multimodal tests: the tiny Qwen3-VL checkpoint, its scorer, images, videos, a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import FileServer, served_file
from tests.multimodal.videos import moving_frames, write_video


@pytest.fixture(scope="session")
def tiny_vl_path() -> Path:
    """The tiny random Qwen3-VL-Reranker of the per-user cache: never write into it."""
    from qwen_rerank.testing import make_tiny_vl_reranker

    return make_tiny_vl_reranker()


@pytest.fixture(scope="session")
def vl_scorer(tiny_vl_path: Path):  # type: ignore[no-untyped-def]
    """A VLScorer with the official settings, shared by the session: never change it."""
    from qwen_rerank.local._vl import VLScorer

    return VLScorer.from_pretrained(tiny_vl_path)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PNG files of several shapes, with smooth structure so that the resampling filter matters.

    small (70 x 90) is shrunk in height and stretched in width, tiny (20 x 30) is stretched to the
    least pixels, big (500 x 400) is shrunk under tight bounds, alpha (48 x 64) is RGBA;
    frame0..frame6 (160 x 120) are the frames of a video.
    """
    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(7)
    shapes = {"small": (70, 90), "tiny": (20, 30), "big": (500, 400), "alpha": (64, 48)}
    shapes |= {f"frame{k}": (120, 160) for k in range(7)}
    paths = {}
    for name, (height, width) in shapes.items():
        channels = 4 if name == "alpha" else 3
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        yy, xx = np.mgrid[0:height, 0:width]
        pixels[..., 0] = ((np.sin(xx / 7.0) + np.cos(yy / 5.0)) * 60 + 128).astype(np.uint8)
        path = folder / f"{name}.png"
        Image.fromarray(pixels, "RGBA" if channels == 4 else "RGB").save(path)
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Video files: clip (24 frames of 100 x 70 at 8 per second, lossless), long (40 frames of
    90 x 66 at 4 per second, lossless) and h264 (30 frames of 98 x 58 at 12 per second, H.264 with
    B-frames, so frames come out of the decoder in another order than they are stored)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "clip": str(write_video(folder / "clip.mkv", moving_frames(24, 70, 100), 8)),
        "long": str(write_video(folder / "long.mkv", moving_frames(40, 66, 90, seed=4), 4)),
        "h264": str(write_video(folder / "h264.mp4", moving_frames(30, 58, 98, seed=5), 12, "libx264")),
    }


@pytest.fixture
def video_server(videos: dict[str, str]) -> Iterator[FileServer]:
    with served_file(
        Path(videos["clip"]).read_bytes(), "video/x-matroska", "/clip.mkv?token=s3cr3t"
    ) as server:
        yield server
