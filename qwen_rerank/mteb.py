"""Moved to [`qwen_rerank.integrations.mteb`][qwen_rerank.integrations.mteb]; this path keeps working."""

from __future__ import annotations

from qwen_rerank.integrations.mteb import MTEBReranker, local_reranking_task

__all__ = ["MTEBReranker", "local_reranking_task"]
