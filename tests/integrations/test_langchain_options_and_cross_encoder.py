"""LangChain adapter: per-call instruction, top_n=-1, rank_fields, QwenCrossEncoder, bad input."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from langchain_qwen_rerank import QwenCrossEncoder, QwenRerank
from qwen_rerank import InvalidInputError, Reranker
from tests.helpers import Recorder

QUERY = "What is the capital of China?"
TEXTS = [
    "The capital of China is Beijing.",
    "Paris is the capital of France.",
    "Gravity pulls bodies together.",
    "北京是中华人民共和国的首都。",
]


def make_documents() -> list[Document]:
    return [
        Document(page_content=text, id=f"doc-{i}", metadata={"title": f"T{i}", "year": 2000 + i})
        for i, text in enumerate(TEXTS)
    ]


async def test_per_call_instruction_applies_to_that_call_only(tiny_reranker: Reranker, mode: str) -> None:
    recorder = Recorder(tiny_reranker)
    compressor = QwenRerank(reranker=recorder, top_n=None, instruction="Instance instruction")
    docs = make_documents()
    if mode == "sync":
        compressor.compress_documents(docs, QUERY, instruction="Call instruction")
        compressor.compress_documents(docs, QUERY)
        compressor.rerank(TEXTS, QUERY, instruction="Rerank instruction")
    else:
        await compressor.acompress_documents(docs, QUERY, instruction="Call instruction")
        await compressor.acompress_documents(docs, QUERY)
        await compressor.arerank(TEXTS, QUERY, instruction="Rerank instruction")
    assert [call[2] for call in recorder.calls] == [
        "Call instruction",
        "Instance instruction",
        "Rerank instruction",
    ]
    scored = compressor.compress_documents(docs, QUERY, instruction="Find capitals")
    want = tiny_reranker.score(QUERY, TEXTS, instruction="Find capitals")
    assert sorted(d.metadata["relevance_score"] for d in scored) == sorted(want)


async def test_rerank_top_n_minus_one_returns_all(tiny_reranker: Reranker, mode: str) -> None:
    compressor = QwenRerank(reranker=tiny_reranker, top_n=1)

    async def rerank(**kwargs: Any) -> list[dict[str, Any]]:
        if mode == "sync":
            return compressor.rerank(TEXTS, QUERY, **kwargs)
        return await compressor.arerank(TEXTS, QUERY, **kwargs)

    assert len(await rerank()) == 1
    assert len(await rerank(top_n=-1)) == len(TEXTS) == len(await rerank(top_n=None))
    assert len(await rerank(top_n=2)) == 2
    for bad in (-2, 0):
        with pytest.raises(InvalidInputError, match="top_n"):
            await rerank(top_n=bad)


def test_rank_fields_score_the_metadata_with_the_text(tiny_reranker: Reranker) -> None:
    compressor = QwenRerank(reranker=tiny_reranker, top_n=None, rank_fields=["title", "missing", "year"])
    scored = compressor.compress_documents(make_documents(), QUERY)
    layout = [f"title: T{i}\nyear: {2000 + i}\n{text}" for i, text in enumerate(TEXTS)]
    want = tiny_reranker.score(QUERY, layout)
    assert sorted((d.id, d.metadata["relevance_score"]) for d in scored) == sorted(
        (f"doc-{i}", s) for i, s in enumerate(want)
    )
    assert all(d.page_content in TEXTS for d in scored)  # the returned text is untouched
    dicts = compressor.rerank([{"text": TEXTS[0], "title": "T0"}, TEXTS[1]], QUERY)
    by_index = {d["index"]: d["relevance_score"] for d in dicts}
    # Scored in another batch than the check, so equal within float rounding.
    assert by_index[0] == pytest.approx(tiny_reranker.score(QUERY, [f"title: T0\n{TEXTS[0]}"])[0], abs=1e-6)
    assert by_index[1] == pytest.approx(tiny_reranker.score(QUERY, [TEXTS[1]])[0], abs=1e-6)
    plain = QwenRerank(reranker=tiny_reranker, top_n=None).compress_documents(make_documents(), QUERY)
    assert sorted(d.metadata["relevance_score"] for d in plain) == sorted(tiny_reranker.score(QUERY, TEXTS))


def test_a_bare_dict_or_str_is_invalid_input(tiny_reranker: Reranker) -> None:
    compressor = QwenRerank(reranker=tiny_reranker)
    with pytest.raises(InvalidInputError, match="documents must be a list, got dict; wrap a single"):
        compressor.rerank({"text": "The capital of China is Beijing."}, QUERY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="documents must be a list, got str"):
        compressor.rerank("The capital of China is Beijing.", QUERY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="documents must be a list, got dict"):
        compressor.compress_documents({"page_content": "x"}, QUERY)  # type: ignore[arg-type]


async def test_metadata_that_cannot_be_deep_copied_never_fails_after_scoring(
    tiny_reranker: Reranker, mode: str
) -> None:
    lock = threading.Lock()
    document = Document(page_content=TEXTS[0], id="locked", metadata={"lock": lock, "tags": ["a"]})
    compressor = QwenRerank(reranker=tiny_reranker)
    if mode == "sync":
        (out,) = compressor.compress_documents([document], QUERY)
    else:
        (out,) = await compressor.acompress_documents([document], QUERY)
    assert out.metadata["lock"] is lock and out.metadata["tags"] == ["a"]
    assert (
        out.metadata["tags"] is not document.metadata["tags"] and "relevance_score" not in document.metadata
    )
    assert out.id == "locked"


def test_cross_encoder_groups_pairs_by_query(tiny_reranker: Reranker) -> None:
    recorder = Recorder(tiny_reranker)
    encoder = QwenCrossEncoder(reranker=recorder, instruction="Find capitals")
    pairs = [("q1", "a"), ("q2", "b"), ("q1", "c"), ("q2", "d"), ("q1", "e")]
    scores = encoder.score(pairs)
    assert [(q, docs) for q, docs, _ in recorder.calls] == [("q1", ["a", "c", "e"]), ("q2", ["b", "d"])]
    assert {instruction for _, _, instruction in recorder.calls} == {"Find capitals"}
    q1 = tiny_reranker.score("q1", ["a", "c", "e"], instruction="Find capitals")
    q2 = tiny_reranker.score("q2", ["b", "d"], instruction="Find capitals")
    assert scores == [q1[0], q2[0], q1[1], q2[1], q1[2]]
    assert encoder.score([]) == []
    with pytest.raises(InvalidInputError, match=r"text_pairs\[1\] must be a \(query, document\) pair"):
        encoder.score([("q", "a"), ("q",)])  # type: ignore[list-item]


async def test_cross_encoder_inside_cross_encoder_reranker(
    tiny_model_path: Any, fake_vllm: Any, mode: str
) -> None:
    for encoder in (
        QwenCrossEncoder(model=tiny_model_path, device="cpu"),
        QwenCrossEncoder(base_url=fake_vllm.url),
    ):
        retriever = ContextualCompressionRetriever(
            base_compressor=CrossEncoderReranker(model=encoder, top_n=2),
            base_retriever=RunnableLambda(lambda query: make_documents()),
        )
        docs = retriever.invoke(QUERY) if mode == "sync" else await retriever.ainvoke(QUERY)
        scores = encoder.score([(QUERY, text) for text in TEXTS])
        best = sorted(range(len(TEXTS)), key=lambda i: -scores[i])[:2]
        assert [d.id for d in docs] == [f"doc-{i}" for i in best]
        encoder.close()
    assert len(fake_vllm.rerank_requests) == 2  # one request per retrieval, and one for the check
