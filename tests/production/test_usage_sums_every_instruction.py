"""``last_usage`` and the span's token count sum every request of a call, whatever its instructions."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_rerank import VLLMReranker

REQUESTS = [
    ("What is the capital of China?", ["Beijing is the capital.", "Paris is in France."]),
    ("Why is the sky blue?", ["Rayleigh scattering.", "Bananas are yellow.", "It reflects the sea."]),
    ("Who wrote Hamlet?", ["Shakespeare wrote it."]),
    ("What do pandas eat?", ["Bamboo, mostly.", "Fish."]),
]
INSTRUCTIONS = ["Find the answer", "Find the answer", "Judge the relevance", None]


def billed_one_by_one(reranker: VLLMReranker) -> int:
    total = 0
    for (query, documents), instruction in zip(REQUESTS, INSTRUCTIONS, strict=True):
        reranker.score(query, documents, instruction=instruction)
        usage = reranker.last_usage
        assert usage is not None and usage.prompt_tokens
        total += usage.prompt_tokens
    return total


@pytest.mark.parametrize("method", ["score_many", "rerank_many"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_usage_counts_every_instruction_group(fake_vllm: Any, method: str, mode: str) -> None:
    with VLLMReranker(fake_vllm.url, max_documents_per_request=2) as reranker:
        expected = billed_one_by_one(reranker)
        call = getattr(reranker, method if mode == "sync" else f"a{method}")
        out = call(REQUESTS, instructions=INSTRUCTIONS)
        if mode == "async":
            await out
        usage = reranker.last_usage
    assert usage is not None
    assert usage.prompt_tokens == expected


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_span_counts_every_instruction_group(fake_vllm: Any, spans: Any, mode: str) -> None:
    with VLLMReranker(fake_vllm.url) as reranker:
        expected = billed_one_by_one(reranker)
        spans.clear()
        if mode == "sync":
            reranker.score_many(REQUESTS, instructions=INSTRUCTIONS)
        else:
            await reranker.ascore_many(REQUESTS, instructions=INSTRUCTIONS)
    (parent,) = [s for s in spans.get_finished_spans() if s.name == "qwen_rerank.score_many"]
    assert parent.attributes["llm.token_count.prompt"] == expected
