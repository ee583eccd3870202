"""Helpers of the video tests: video files written with PyAV, and a loopback server of one file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, frames: list[np.ndarray], rate: int, codec: str = "ffv1") -> Path:
    """Encode RGB `frames` at `rate` per second: FFV1 in RGB (lossless) by default, else ``yuv420p``."""
    import av

    height, width, _ = frames[0].shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def moving_frames(count: int, height: int, width: int, seed: int = 3) -> list[np.ndarray]:
    """Frames with smooth structure that moves, over noise, so that resizing and sampling matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(count):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels[..., 1] = ((np.sin((xx + 3 * k) / 6.0) + np.cos(yy / 4.0)) * 60 + 128).astype(np.uint8)
        frames.append(pixels)
    return frames
