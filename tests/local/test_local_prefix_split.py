"""The split tokenization behind LocalReranker's prefix reuse: every prompt starts with the query's
head, and the split is one a naive cut would get wrong."""

from __future__ import annotations

from qwen_rerank import LocalReranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, format_body, format_query_part
from tests.local.fast_path import (
    DOCUMENTS,
    INSTRUCTION,
)

# Queries whose last characters could merge with the "\n<Document>" that follows them.
TRICKY_QUERIES = [
    "what?",
    "what? ",
    "what?!",
    "trailing spaces   ",
    "tab\t",
    "newline\n",
    "crlf\r\n",
    "\r",
    "",
    " ",
    "中国的首都是哪里？",
    "首都",
    "🐼",
    "ends with a digit 7",
    "ends with an apostrophe'",
    "it's",
    "a <",
    "x >",
    "e\u0301",
    "combining at the end e\u0301\u0300",
    "zero width joiner\u200d",
    "<Document>:",
    "<|im_end|>",
]


def test_every_prompt_starts_with_the_head(tiny_reranker: LocalReranker) -> None:
    pt = tiny_reranker.prompt_tokenizer
    documents = [*DOCUMENTS, "?", "\n", "s", "'s", "\u0301x", "  two", "!?<", "中文"]
    for instruction in (DEFAULT_INSTRUCTION, INSTRUCTION, "", "ends with?", "中文指令"):
        for query in TRICKY_QUERIES:
            head = pt.encode_head(query, instruction)
            for prompt in pt.encode_pairs(query, documents, instruction, 100_000):
                assert prompt[: len(head)] == head, (query, instruction)
                assert len(prompt) > len(head)


def test_the_head_split_is_not_trivially_safe(tiny_reranker: LocalReranker) -> None:
    """A naive split before the newline would break: Qwen's BPE merges "?\\n" into one token."""
    pt = tiny_reranker.prompt_tokenizer
    query_part = format_query_part("what?", DEFAULT_INSTRUCTION)
    naive = pt.encode_text([query_part.removesuffix("\n")])[0]
    body = pt.encode_text([format_body("what?", "doc", DEFAULT_INSTRUCTION)])[0]
    assert body[: len(naive)] != naive
    question_newline = pt.encode_text(["?\n"])[0]
    assert len(question_newline) == 1
    assert pt.encode_head("what?", DEFAULT_INSTRUCTION)[-1] == question_newline[0]
