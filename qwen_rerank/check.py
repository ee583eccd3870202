"""Moved to [`qwen_rerank.cli.check`][qwen_rerank.cli.check]; this path keeps working."""

from __future__ import annotations

from qwen_rerank.cli.check import Finding, add_check_command, run_checks

__all__ = ["Finding", "add_check_command", "run_checks"]
