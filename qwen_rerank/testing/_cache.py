"""A folder built once into the per-user cache, safe against concurrent builders."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_once"]


def build_once(out: Path, key: str, done: str, build: Callable[[Path], None]) -> Path:
    """``out``, made by ``build(folder)`` unless a finished build is there already.

    The build runs in a staging folder beside ``out`` and is renamed into place with the marker
    file ``done`` (holding ``key``), so a reader never sees half a build, and of two concurrent
    builds the first to finish wins.
    """
    if (out / done).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out.parent))
    try:
        build(staging)
        (staging / done).write_text(key + "\n", encoding="utf-8")
        try:
            staging.rename(out)
        except OSError:
            if not (out / done).is_file():  # not a concurrent build that finished first
                shutil.rmtree(out, ignore_errors=True)
                staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
