"""Lazy imports of optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from qwen_rerank.exceptions import MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise MissingDependencyError telling how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed. "
            f'Install it with: pip install "qwen-rerank[{extra}]"'
        ) from exc
