"""api="llamacpp" refuses a call with any instruction but the GGUF's before it sends any request."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_rerank import DEFAULT_INSTRUCTION, InvalidInputError, VLLMReranker

REQUESTS = [("first query", ["a document"]), ("second query", ["another document"])]


@pytest.mark.parametrize("method", ["score_many", "rerank_many"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_later_bad_instruction_stops_the_whole_call(fake_vllm: Any, method: str, mode: str) -> None:
    # The fake vLLM server answers llama-server's request shape with the same reply shape.
    with VLLMReranker(fake_vllm.url + "/v1/rerank", api="llamacpp", max_retries=0) as reranker:
        call = getattr(reranker, method if mode == "sync" else f"a{method}")
        with pytest.raises(InvalidInputError, match="fixed instruction"):
            out = call(REQUESTS, instructions=[DEFAULT_INSTRUCTION, "Find recipes"])
            if mode == "async":
                await out
    assert fake_vllm.rerank_requests == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_pairs_with_a_later_bad_instruction_send_nothing(fake_vllm: Any, mode: str) -> None:
    pairs = [(query, documents[0]) for query, documents in REQUESTS]
    reranker = VLLMReranker(fake_vllm.url + "/v1/rerank", api="llamacpp", max_retries=0)
    with reranker, pytest.raises(InvalidInputError, match="fixed instruction"):
        if mode == "sync":
            reranker.score_pairs(pairs, instructions=[None, "Find recipes"])
        else:
            await reranker.ascore_pairs(pairs, instructions=[None, "Find recipes"])
    assert fake_vllm.rerank_requests == []


def test_the_ggufs_instruction_for_every_request_is_scored(fake_vllm: Any) -> None:
    with VLLMReranker(fake_vllm.url + "/v1/rerank", api="llamacpp", max_retries=0) as reranker:
        scores = reranker.score_many(REQUESTS, instructions=[DEFAULT_INSTRUCTION, None])
    assert [len(s) for s in scores] == [1, 1]
