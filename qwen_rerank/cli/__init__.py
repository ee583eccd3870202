"""The ``qwen-rerank`` command line: ``rank``, ``eval``, ``demo`` and ``check``."""

from __future__ import annotations

from qwen_rerank.cli._main import build_parser, main, read_documents

__all__ = ["build_parser", "main", "read_documents"]
