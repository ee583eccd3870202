"""Warnings of ours, attributed to the user's line rather than to ours."""

from __future__ import annotations

import sys
import warnings

from qwen_rerank.exceptions import QwenRerankWarning

__all__ = ["warn"]

# Our packages, and the libraries that call into them on a user's behalf (the frameworks run
# our adapters; pydantic builds the LangChain and LlamaIndex ones): a warning skips their frames.
_SKIPPED = (
    "qwen_rerank",
    "langchain_qwen_rerank",
    "llamaindex_qwen_rerank",
    "haystack_qwen_rerank",
    "haystack",
    "langchain",
    "langchain_core",
    "llama_index",
    "pydantic",
    "pydantic_core",
)


def warn(message: str) -> None:
    """Warn with [`QwenRerankWarning`][qwen_rerank.QwenRerankWarning], attributed to the first
    caller outside these packages.

    Like Python 3.12's ``skip_file_prefixes``, on every supported Python.
    """
    frame = sys._getframe(1)
    level = 2  # warn's caller
    while frame.f_back is not None and _skipped(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        level += 1
    warnings.warn(message, QwenRerankWarning, stacklevel=level)


def _skipped(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in _SKIPPED)
