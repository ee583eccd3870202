"""LocalReranker's fast path scores as the model card's loop does, whatever the token budget,
prefix reuse, query ending or truncation (the real tiny model, the real tokenizer)."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    INSTRUCTION,
    QUERY,
    card_scores,
    recorded_batches,
)
from tests.reference import ModelCardReranker


@pytest.mark.slow  # the model card's loop, one document a pass, at each setting
@pytest.mark.parametrize(
    ("max_batch_tokens", "prefix_reuse"),
    [(1, True), (150, True), (700, False), (None, True), (None, False), (1_000_000, True)],
)
def test_parity_across_budgets_and_prefix_reuse(
    make: Any,
    reference: ModelCardReranker,
    shuffled: list[str],
    prefix_reuse: bool,
    max_batch_tokens: int | None,
) -> None:
    ours = make(max_batch_tokens=max_batch_tokens, prefix_reuse=prefix_reuse)
    for instruction in (None, INSTRUCTION):
        expected = card_scores(reference, QUERY, shuffled, instruction)
        assert max_diff(ours.score(QUERY, shuffled, instruction=instruction), expected) < 1e-5
    assert max(expected) - min(expected) > 0.01


@pytest.mark.slow  # the model card's loop for each query
@pytest.mark.parametrize("query", ["what?", "中国的首都是哪里？", "trailing spaces   ", "🐼", "crlf\r\n"])
def test_parity_for_queries_that_end_in_punctuation_space_or_cjk(
    tiny_reranker: LocalReranker, reference: ModelCardReranker, query: str
) -> None:
    assert max_diff(tiny_reranker.score(query, DOCUMENTS), card_scores(reference, query, DOCUMENTS)) < 1e-5


@pytest.mark.slow  # the model card's loop, one document a pass, at each setting
@pytest.mark.parametrize(("max_length", "prefix_reuse"), [(60, True), (75, False), (90, True), (300, False)])
def test_parity_when_truncating(
    make: Any, truncating_references: Any, max_length: int, prefix_reuse: bool
) -> None:
    """Bodies are cut from the end; at 60 and 75 tokens the cut reaches into the query itself."""
    reference = truncating_references(max_length)
    ours = make(max_length=max_length, max_batch_tokens=200, prefix_reuse=prefix_reuse)
    long_query = "Which city is the capital of China, and why? " * 3
    for query in (QUERY, long_query):
        prompts = ours.prompt_tokenizer.encode_pairs(query, DOCUMENTS, DEFAULT_INSTRUCTION, max_length)
        assert max(map(len, prompts)) <= max_length
        assert max_diff(ours.score(query, DOCUMENTS), card_scores(reference, query, DOCUMENTS)) < 1e-5


@pytest.mark.slow  # the model card's loop, truncating
def test_truncation_into_the_query_falls_back_to_whole_prompts(make: Any, truncating_references: Any) -> None:
    ours = make(max_length=75, max_batch_tokens=200, prefix_reuse=True)
    pt = ours.prompt_tokenizer
    head = pt.encode_head(QUERY * 3, DEFAULT_INSTRUCTION)
    prompts = pt.encode_pairs(QUERY * 3, DOCUMENTS, DEFAULT_INSTRUCTION, 75)
    assert all(p[: len(head)] != head for p in prompts)
    with recorded_batches(ours) as shapes:
        scores = ours.score(QUERY * 3, DOCUMENTS)
    # The query's own head never runs: the prompts do not start with it. They may still continue the
    # head they all share (system prompt, instruction, the part of the query that was kept): at most
    # one extra one-row pass.
    assert (1, len(head)) not in shapes
    assert all(width == 75 or rows * width <= 200 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) - len(DOCUMENTS) in (0, 1)
    assert max_diff(scores, card_scores(truncating_references(75), QUERY * 3, DOCUMENTS)) < 1e-5
