"""What the tests of VLLMReranker against the loopback fake server share: the query and documents, and
how to read a document back out of the prompt that was sent for it."""

from __future__ import annotations

import pytest

from qwen_rerank.prompt import SUFFIX

QUERY = "what is a giant panda?"
DOCS = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
    "what? yes!\n\nno  ",
    "数字 123 和中文文本。",
    "Pandas eat bamboo. " * 20,
    "The giant panda is a bear species endemic to China.",
]
INSTRUCTION = "Given a question about animals, retrieve the passage that answers it"
SECRET = "sk-test-0123456789abcdef"
SERVED = "Qwen/Qwen3-Reranker-0.6B"  # the name the fake server serves
VLLM_ONLY = pytest.mark.parametrize("api", ["vllm"])  # checks of vLLM's own request fields


def raw_document(document_text: str) -> str:
    """The document as the user gave it, from the client-template text sent for it."""
    return document_text.removeprefix("<Document>: ").removesuffix(SUFFIX)
