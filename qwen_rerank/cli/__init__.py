"""The ``qwen-rerank`` command line: ``rank``, ``eval``, ``demo`` and ``check``."""

from __future__ import annotations

from qwen_rerank.cli._common import UsageError
from qwen_rerank.cli._main import build_parser, main, read_documents

__all__ = ["UsageError", "build_parser", "main", "read_documents"]
