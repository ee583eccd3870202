"""template="client" against a real vLLM without --chat-template: scores, paths, usage, truncation."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import httpx
import pytest

from qwen_rerank import APIStatusError, LocalReranker, VLLMReranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, PromptTokenizer, split_prompts
from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.helpers import CJK_DOCS, CJK_QUERY, DOCS, OTHER, QUERY, TOL, close

pytestmark = [
    pytest.mark.external,
    pytest.mark.xdist_group("vllm"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
]


@pytest.mark.parametrize(("query", "docs"), [(QUERY, DOCS), (CJK_QUERY, CJK_DOCS)], ids=["english", "cjk"])
@pytest.mark.parametrize("instruction", [None, OTHER], ids=["default", "custom"])
def test_scores_match_local_per_call_and_at_construction(
    vllm_plain: VLLMServer, vllm_local: LocalReranker, query: str, docs: list[str], instruction: str | None
) -> None:
    expected = vllm_local.score(query, docs, instruction=instruction)
    with VLLMReranker(vllm_plain.url, template="client") as per_call:
        assert close(per_call.score(query, docs, instruction=instruction), expected) < TOL
    with VLLMReranker(vllm_plain.url, template="client", instruction=instruction) as built:
        assert close(built.score(query, docs), expected) < TOL


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
def test_every_rerank_path_gives_the_scores(
    vllm_plain: VLLMServer, vllm_local: LocalReranker, path: str
) -> None:
    with VLLMReranker(vllm_plain.url + path) as reranker:
        results = reranker.rerank(QUERY, DOCS)
    expected = vllm_local.score(QUERY, DOCS)
    assert close([r.score for r in sorted(results, key=lambda r: r.index)], expected) < TOL


def test_the_score_endpoint_scores_the_split_prompt_the_same(
    vllm_plain: VLLMServer, vllm_local: LocalReranker
) -> None:
    query_text, texts = split_prompts(QUERY, DOCS, DEFAULT_INSTRUCTION)
    response = httpx.post(
        vllm_plain.url + "/score", json={"queries": query_text, "documents": texts}, timeout=60
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    scores = [item["score"] for item in sorted(data, key=lambda item: item["index"])]
    assert close(scores, vllm_local.score(QUERY, DOCS)) < TOL


def test_usage_counts_the_model_cards_prompts(vllm_plain: VLLMServer, vllm_model: Path) -> None:
    from transformers import AutoTokenizer

    ours = PromptTokenizer(AutoTokenizer.from_pretrained(vllm_model))
    for query, docs in ((QUERY, DOCS), (CJK_QUERY, CJK_DOCS)):
        with VLLMReranker(vllm_plain.url) as reranker:
            reranker.score(query, docs)
            usage = reranker.last_usage
        counted = sum(len(ids) for ids in ours.encode_pairs(query, docs, DEFAULT_INSTRUCTION, 10**6))
        assert usage is not None and usage.prompt_tokens == counted == usage.total_tokens


@pytest.mark.parametrize("max_length", [120, 512])
def test_truncation_on_the_client_gives_the_local_scores(
    vllm_plain: VLLMServer, vllm_model: Path, max_length: int
) -> None:
    docs = [" ".join(DOCS * 12), "短" * 50 + "北京是首都。" * 60, DOCS[0]]
    local = LocalReranker(str(vllm_model), device="cpu", dtype="float32", max_length=max_length)
    with VLLMReranker(vllm_plain.url, tokenizer=str(vllm_model), max_length=max_length) as reranker:
        scores = reranker.score(QUERY, docs)
        assert reranker.last_usage is not None and reranker.last_usage.prompt_tokens <= 3 * max_length
    assert close(scores, local.score(QUERY, docs)) < TOL


def test_a_prompt_over_max_model_len_is_our_error_naming_the_flag(vllm_plain: VLLMServer) -> None:
    with VLLMReranker(vllm_plain.url, max_retries=0) as reranker, pytest.raises(APIStatusError) as caught:
        reranker.score(QUERY, [DOCS[0] * 40])
    assert caught.value.status_code == 400
    message = str(caught.value)
    assert "maximum context length is 512" in message
    assert "--max-model-len" in message and "tokenizer=" in message


def test_chunk_mode_keeps_each_documents_best_window(vllm_plain: VLLMServer, vllm_model: Path) -> None:
    long_doc = " ".join(DOCS[1:] * 10) + " " + DOCS[0] + " " + " ".join(DOCS[1:] * 10)
    docs = [long_doc, DOCS[1]]
    options = {"long_documents": "chunk", "chunk_tokens": 160, "chunk_overlap": 32, "max_length": 256}
    local = LocalReranker(str(vllm_model), device="cpu", dtype="float32", **options)  # type: ignore[arg-type]
    with VLLMReranker(vllm_plain.url, tokenizer=str(vllm_model), **options) as reranker:  # type: ignore[arg-type]
        remote = reranker.rerank(QUERY, docs)
    expected = local.rerank(QUERY, docs)
    assert close([r.score for r in sorted(remote, key=lambda r: r.index)],
                 [r.score for r in sorted(expected, key=lambda r: r.index)]) < TOL  # fmt: skip


def test_concurrent_callers_sync_and_async_get_their_own_scores(
    vllm_plain: VLLMServer, vllm_local: LocalReranker
) -> None:
    queries = [QUERY, CJK_QUERY, "Which animal eats bamboo?", "What is gravity?"]
    docs = DOCS + CJK_DOCS
    expected = {q: vllm_local.score(q, docs) for q in queries}
    with VLLMReranker(vllm_plain.url, max_documents_per_request=3, max_concurrency=4) as reranker:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: reranker.score(q, docs), queries * 2))

        async def all_async() -> list[list[float]]:
            try:
                return await asyncio.gather(*(reranker.ascore(q, docs) for q in queries))
            finally:
                await reranker.aclose()

        got_async = asyncio.run(all_async())
    for query, scores in zip(queries * 2 + queries, got + got_async, strict=True):
        assert close(scores, expected[query]) < TOL
