"""A real chain in each framework keeps answering, in retrieval order, through every planted backend fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import qwen_rerank
from tests.production.conftest import FAULTS, plant

QUERY = "What is the capital of China?"
TEXTS = [
    "Paris is the capital of France.",
    "Beijing is the capital of China.",
    "The Great Wall is in China.",
    "Bananas are rich in potassium.",
    "Berlin is the capital of Germany.",
]


def langchain_chain(compressor: Any) -> tuple[Any, Any]:
    """A ContextualCompressionRetriever over a fixed retriever, inside an LCEL chain that builds a prompt."""
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    docs = [Document(page_content=t, id=f"doc-{i}", metadata={"n": i}) for i, t in enumerate(TEXTS)]
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=RunnableLambda(lambda query: docs)
    )
    chain = {
        "context": retriever | RunnableLambda(lambda found: "\n".join(d.page_content for d in found)),
        "question": RunnablePassthrough(),
    } | RunnableLambda(lambda x: f"Context:\n{x['context']}\nQuestion: {x['question']}")
    return retriever, chain


async def test_langchain_chain_answers_through_the_fault(
    planted: tuple[str, dict[str, Any]], fault: str, mode: str, fake_vllm: Any, closed_port_url: str
) -> None:
    from langchain_qwen_rerank import QwenRerank

    url, options = planted
    compressor = QwenRerank(
        base_url=url,
        timeout=options["timeout"],
        backend_options={"max_retries": 0},
        top_n=3,
        on_error="passthrough",
    )
    retriever, chain = langchain_chain(compressor)
    docs = retriever.invoke(QUERY) if mode == "sync" else await retriever.ainvoke(QUERY)
    assert [d.id for d in docs] == ["doc-0", "doc-1", "doc-2"]
    assert [d.metadata for d in docs] == [
        {"n": i, "reranked": False, "rerank_error": FAULTS[fault]} for i in range(3)
    ]
    plant(fault, fake_vllm, closed_port_url)  # each planted fault hits one request: again for the chain
    prompt = chain.invoke(QUERY) if mode == "sync" else await chain.ainvoke(QUERY)
    assert prompt == "Context:\n" + "\n".join(TEXTS[:3]) + f"\nQuestion: {QUERY}"
    assert qwen_rerank.fallback_counts() == {FAULTS[fault]: 2}


async def test_llamaindex_query_engine_answers_through_the_fault(
    planted: tuple[str, dict[str, Any]], fault: str, mode: str
) -> None:
    from llama_index.core import Document, MockEmbedding, VectorStoreIndex
    from llama_index.core.llms import MockLLM

    from llamaindex_qwen_rerank import QwenRerank

    url, options = planted
    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(TEXTS)],
        embed_model=MockEmbedding(embed_dim=8),
    )
    postprocessor = QwenRerank(
        base_url=url,
        timeout=options["timeout"],
        backend_options={"max_retries": 0},
        top_n=2,
        on_error="passthrough",
    )
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=len(TEXTS), node_postprocessors=[postprocessor]
    )
    response = engine.query(QUERY) if mode == "sync" else await engine.aquery(QUERY)
    assert str(response)  # the engine answered
    retrieved = index.as_retriever(similarity_top_k=len(TEXTS)).retrieve(QUERY)
    source = response.source_nodes
    # Retrieval order and retrieval scores, cut to top_n, each node marked.
    assert [(n.node.node_id, n.score) for n in source] == [(n.node.node_id, n.score) for n in retrieved[:2]]
    for node in source:
        assert node.node.metadata == {"reranked": False, "rerank_error": FAULTS[fault]}
        assert "reranked" in node.node.excluded_llm_metadata_keys


async def test_haystack_pipeline_answers_through_the_fault(
    planted: tuple[str, dict[str, Any]], fault: str, mode: str
) -> None:
    from haystack import Document, Pipeline
    from haystack.components.builders import PromptBuilder
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from haystack_qwen_rerank import QwenRanker

    url, options = planted
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)])
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=len(TEXTS)))
    ranker = QwenRanker(
        base_url=url,
        timeout=options["timeout"],
        backend_options={"max_retries": 0},
        top_k=3,
        on_error="passthrough",
    )
    pipeline.add_component("ranker", ranker)
    template = "{% for d in documents %}{{ d.content }}\n{% endfor %}Question: {{ query }}"
    pipeline.add_component(
        "prompt", PromptBuilder(template=template, required_variables=["documents", "query"])
    )
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "prompt.documents")
    data = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}, "prompt": {"query": QUERY}}
    result = (
        pipeline.run(data, include_outputs_from={"ranker"})
        if mode == "sync"
        else (await pipeline.run_async(data, include_outputs_from={"ranker"}))
    )
    retrieved = InMemoryBM25Retriever(document_store=store, top_k=3).run(query=QUERY)["documents"]
    ranked = result["ranker"]["documents"]
    assert [(d.id, d.score) for d in ranked] == [(d.id, d.score) for d in retrieved]
    assert all(d.meta == {"reranked": False, "rerank_error": FAULTS[fault]} for d in ranked)
    assert result["prompt"]["prompt"] == "".join(f"{d.content}\n" for d in retrieved) + f"Question: {QUERY}"


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "haystack"])
def test_a_model_that_cannot_load_falls_back_in_every_adapter(
    tmp_path: Path, framework: str, spans: Any
) -> None:
    missing = tmp_path / "no-such-model"
    if framework == "langchain":
        from langchain_core.documents import Document

        from langchain_qwen_rerank import QwenRerank

        docs = QwenRerank(model=missing, device="cpu", top_n=2, on_error="passthrough").compress_documents(
            [Document(page_content=t) for t in TEXTS], QUERY
        )
        got = [(d.page_content, d.metadata) for d in docs]
    elif framework == "llamaindex":
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        from llamaindex_qwen_rerank import QwenRerank as Postprocessor

        nodes = Postprocessor(model=missing, device="cpu", top_n=2, on_error="passthrough").postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t), score=1.0) for t in TEXTS], QueryBundle(QUERY)
        )
        got = [(n.node.get_content(), n.node.metadata) for n in nodes]
    else:
        from haystack import Document as HaystackDocument

        from haystack_qwen_rerank import QwenRanker

        ranked = QwenRanker(model=missing, device="cpu", top_k=2, on_error="passthrough").run(
            QUERY, [HaystackDocument(content=t) for t in TEXTS]
        )["documents"]
        got = [(d.content, d.meta) for d in ranked]
    marks = {"reranked": False, "rerank_error": "ModelLoadError"}
    assert got == [(TEXTS[0], marks), (TEXTS[1], marks)]
    assert qwen_rerank.fallback_counts() == {"ModelLoadError": 1}
    (span,) = spans.get_finished_spans()
    assert span.attributes["qwen_rerank.fallback"] is True
    assert span.attributes["error.type"] == "ModelLoadError"
    assert span.attributes["qwen_rerank.backend"] == "none"


@pytest.mark.parametrize("framework", ["langchain", "llamaindex", "haystack"])
def test_on_error_is_checked_when_the_adapter_is_built(framework: str, fake_vllm: Any) -> None:
    from qwen_rerank import InvalidInputError

    with pytest.raises(InvalidInputError, match="on_error must be 'raise'"):
        if framework == "langchain":
            from langchain_qwen_rerank import QwenRerank

            QwenRerank(base_url=fake_vllm.url, on_error="ignore")
        elif framework == "llamaindex":
            from llamaindex_qwen_rerank import QwenRerank as Postprocessor

            Postprocessor(base_url=fake_vllm.url, on_error="ignore")
        else:
            from haystack_qwen_rerank import QwenRanker

            QwenRanker(base_url=fake_vllm.url, on_error="ignore")  # type: ignore[arg-type]
