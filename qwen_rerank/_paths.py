"""Where qwen-rerank keeps files between processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir() -> Path:
    """The per-user cache folder: the tiny test model, compiled kernels.

    ``$QWEN_RERANK_CACHE`` if set, else ``$XDG_CACHE_HOME/qwen-rerank`` (by
    default ``~/.cache/qwen-rerank``; ``%LOCALAPPDATA%\\qwen-rerank`` on Windows).
    """
    if os.environ.get("QWEN_RERANK_CACHE"):
        return Path(os.environ["QWEN_RERANK_CACHE"]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "qwen-rerank"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "qwen-rerank"
