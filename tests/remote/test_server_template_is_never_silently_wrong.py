"""template="server" on vLLM: the client warns that it cannot see the template, and with tokenizer= it
checks each reply's prompt token count against the model card's prompts."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from qwen_rerank import MalformedResponseError, QwenRerankWarning, VLLMReranker

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

QUERY = "What is the capital of China?"
DOCS = ["Beijing is the capital of China.", "Gravity attracts bodies.", "熊猫吃竹子。"]


def server_mode(url: str, **options: object) -> VLLMReranker:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QwenRerankWarning)
        return VLLMReranker(url, template="server", max_retries=0, **options)  # type: ignore[arg-type]


def test_server_mode_on_vllm_warns_once_at_construction(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(QwenRerankWarning, match="server_template_path") as caught:
        reranker = VLLMReranker(fake_vllm.url, template="server")
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", QwenRerankWarning)
        with reranker:
            reranker.score(QUERY, DOCS)  # no warning per call
        VLLMReranker(fake_vllm.url).close()  # nor for the client template
        VLLMReranker(fake_vllm.url, api="sglang", template="server").close()  # nor for another dialect


def test_replies_counting_the_card_prompts_pass(fake_vllm, tiny_model_path: Path, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    with server_mode(fake_vllm.url, tokenizer=str(tiny_model_path), max_documents_per_request=2) as reranker:
        scores = reranker.score(QUERY, DOCS, instruction="Find the city")
    assert scores == pytest.approx(tiny_reranker.score(QUERY, DOCS, instruction="Find the city"), abs=1e-4)


def test_a_reply_counting_other_prompts_is_our_error(fake_vllm, tiny_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    with server_mode(fake_vllm.url, tokenizer=str(tiny_model_path)) as reranker:
        reranker.score(QUERY, DOCS)
        right = reranker.last_usage
        assert right is not None and right.prompt_tokens is not None
        results = [{"index": i, "relevance_score": 0.5} for i in range(len(DOCS))]
        wrong = right.prompt_tokens + len(DOCS)  # one token more per pair, as a template that adds one
        usage = {"prompt_tokens": wrong, "total_tokens": wrong}
        fake_vllm.add_fault("json", body={"results": results, "usage": usage})
        with pytest.raises(MalformedResponseError, match="server_template_path") as caught:
            reranker.score(QUERY, DOCS)
    assert f"reports {wrong} prompt tokens where the model card's prompts take {right.prompt_tokens}" in str(
        caught.value
    )


def test_max_tokens_per_doc_leaves_the_count_to_the_server(fake_vllm, tiny_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    with server_mode(fake_vllm.url, tokenizer=str(tiny_model_path), max_tokens_per_doc=3) as reranker:
        assert len(reranker.score(QUERY, DOCS)) == len(DOCS)  # the server cut the documents: not checked


def test_the_fake_renders_vllms_shipped_template_as_vllm_does(fake_vllm, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = "vllm"
    with server_mode(fake_vllm.url) as reranker:
        scores = reranker.score(QUERY, DOCS)
    expected = tiny_reranker.score(QUERY, DOCS)
    assert max(abs(a - b) for a, b in zip(scores, expected, strict=True)) > 1e-3
