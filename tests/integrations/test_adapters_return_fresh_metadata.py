"""Each adapter's results describe that call only, and never change the caller's documents or nodes.

Documents go through two real rerank passes in a real framework (a LangChain retriever, a
LlamaIndex postprocessor, a Haystack Pipeline): one that falls back (``on_error="passthrough"``
on a planted 503) and one that succeeds, in both orders. What the first pass wrote must not
survive the second.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

QUERY = "What is the capital of China?"
TEXTS = ["Paris is the capital of France.", "Beijing is the capital of China.", "Bananas are yellow."]
OPTIONS: dict[str, Any] = {"backend_options": {"max_retries": 0}, "on_error": "passthrough"}
FELL_BACK = {"reranked": False, "rerank_error": "APIStatusError"}
RERANK_KEYS = {"reranked", "rerank_error", "relevance_score", "rerank_usage", "truncated", "best_span"}


def langchain_pass(fake_vllm: Any, docs: list[Any]) -> list[Any]:
    """``docs`` through a ContextualCompressionRetriever over a retriever that returns them."""
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.runnables import RunnableLambda

    from langchain_qwen_rerank import QwenRerank

    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(base_url=fake_vllm.url, **OPTIONS),
        base_retriever=RunnableLambda(lambda query: docs),
    )
    return list(retriever.invoke(QUERY))


def llamaindex_pass(fake_vllm: Any, nodes: list[Any]) -> list[Any]:
    from llama_index.core.schema import QueryBundle

    from llamaindex_qwen_rerank import QwenRerank

    return QwenRerank(base_url=fake_vllm.url, **OPTIONS).postprocess_nodes(nodes, QueryBundle(QUERY))


def haystack_pass(fake_vllm: Any, docs: list[Any]) -> list[Any]:
    """``docs`` through a Pipeline holding the ranker."""
    from haystack import Pipeline

    from haystack_qwen_rerank import QwenRanker

    pipeline = Pipeline()
    pipeline.add_component("ranker", QwenRanker(base_url=fake_vllm.url, **OPTIONS))
    return list(pipeline.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]["documents"])


def first_documents(framework: str) -> list[Any]:
    if framework == "langchain":
        from langchain_core.documents import Document

        return [Document(page_content=t, id=f"d{i}", metadata={"n": i}) for i, t in enumerate(TEXTS)]
    if framework == "llamaindex":
        from llama_index.core.schema import NodeWithScore, TextNode

        return [
            NodeWithScore(node=TextNode(text=t, id_=f"d{i}", metadata={"n": i}), score=0.5)
            for i, t in enumerate(TEXTS)
        ]
    from haystack import Document as HaystackDocument

    return [HaystackDocument(content=t, id=f"d{i}", meta={"n": i}, score=0.5) for i, t in enumerate(TEXTS)]


def run_pass(framework: str, fake_vllm: Any, docs: list[Any]) -> list[Any]:
    return {"langchain": langchain_pass, "llamaindex": llamaindex_pass, "haystack": haystack_pass}[framework](
        fake_vllm, docs
    )


def metadata_of(framework: str, doc: Any) -> dict[str, Any]:
    return dict(
        doc.metadata
        if framework == "langchain"
        else doc.node.metadata
        if framework == "llamaindex"
        else doc.meta
    )


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "haystack"])
def test_a_fallback_after_a_rerank_keeps_no_score_or_cut_of_the_earlier_call(
    framework: str, fake_vllm: Any
) -> None:
    reranked = run_pass(framework, fake_vllm, first_documents(framework))
    assert all(metadata_of(framework, d).get("reranked", True) for d in reranked)
    fake_vllm.add_fault("status", status=503, times=1)
    fell_back = run_pass(framework, fake_vllm, reranked)
    for doc in fell_back:
        metadata = metadata_of(framework, doc)
        assert {k: v for k, v in metadata.items() if k in RERANK_KEYS} == FELL_BACK, metadata
        assert set(metadata) - RERANK_KEYS == {"n"}


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "haystack"])
def test_a_rerank_after_a_fallback_drops_the_fallback_marks(framework: str, fake_vllm: Any) -> None:
    fake_vllm.add_fault("status", status=503, times=1)
    fell_back = run_pass(framework, fake_vllm, first_documents(framework))
    assert all(metadata_of(framework, d)["reranked"] is False for d in fell_back)
    reranked = run_pass(framework, fake_vllm, fell_back)
    for doc in reranked:
        metadata = metadata_of(framework, doc)
        assert "reranked" not in metadata and "rerank_error" not in metadata, metadata
        assert metadata["truncated"] is False and metadata["n"] in (0, 1, 2)
    if framework == "langchain":
        assert all(0 <= d.metadata["relevance_score"] <= 1 for d in reranked)


def test_llamaindex_leaves_nodes_whose_metadata_cannot_be_deep_copied_untouched(fake_vllm: Any) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    lock = threading.Lock()  # cannot be deep-copied: the adapter copies the node another way
    nodes = [
        NodeWithScore(
            node=TextNode(
                text=t,
                metadata={"lock": lock, "n": i},
                excluded_llm_metadata_keys=["lock"],
                excluded_embed_metadata_keys=["lock"],
            ),
            score=0.5,
        )
        for i, t in enumerate(TEXTS)
    ]
    before = [
        (
            dict(n.node.metadata),
            list(n.node.excluded_llm_metadata_keys),
            list(n.node.excluded_embed_metadata_keys),
            n.score,
        )
        for n in nodes
    ]
    for fault in (False, True):  # a rerank, then a fallback
        if fault:
            fake_vllm.add_fault("status", status=503, times=1)
        out = llamaindex_pass(fake_vllm, nodes)
        assert [
            (
                dict(n.node.metadata),
                list(n.node.excluded_llm_metadata_keys),
                list(n.node.excluded_embed_metadata_keys),
                n.score,
            )
            for n in nodes
        ] == before
        for node in out:
            assert node.node.metadata["lock"] is lock
            excluded = set(node.node.excluded_llm_metadata_keys)
            assert {"lock", "truncated" if not fault else "reranked"} <= excluded
