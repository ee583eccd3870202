"""Moved to [`qwen_rerank.integrations.ray`][qwen_rerank.integrations.ray]; this path keeps working."""

from __future__ import annotations

from qwen_rerank.integrations.ray import RerankPredictor

__all__ = ["RerankPredictor"]
