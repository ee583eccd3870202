"""haystack_qwen_rerank.QwenRanker in real Haystack pipelines, on the tiny model and the fake vLLM server."""

from __future__ import annotations

import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

import copy
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from haystack_qwen_rerank import QwenRanker
from qwen_rerank import InvalidInputError, Reranker, VLLMReranker

QUERY = "What is the capital of China?"
TEXTS = [
    "The capital of China is Beijing.",
    "China is a country in East Asia; its capital city is large.",
    "Paris is the capital of France.",
    "What a capital idea: China tea.",
    "Gravity pulls bodies together.",
]


def make_documents() -> list[Document]:
    return [
        Document(id=f"doc-{i}", content=text, meta={"title": f"Title {i}", "rank": i})
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture(params=["local", "remote"])
def ranker_settings(request: pytest.FixtureRequest, tiny_model_path: Path) -> Iterator[dict[str, Any]]:
    """Settings that build the tiny model here, or reach it through the fake vLLM server."""
    if request.param == "local":
        yield {"model": tiny_model_path, "device": "cpu"}  # a pathlib.Path, as os.PathLike
    else:
        yield {"base_url": request.getfixturevalue("fake_vllm").url}


def direct_backend(settings: dict[str, Any], tiny_reranker: Reranker) -> Reranker:
    return VLLMReranker(settings["base_url"]) if "base_url" in settings else tiny_reranker


def bm25_pipeline(ranker: QwenRanker) -> Pipeline:
    store = InMemoryDocumentStore()
    store.write_documents(make_documents())
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=len(TEXTS)))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


async def test_bm25_pipeline_reranks_with_the_backend_scores(
    ranker_settings: dict[str, Any], tiny_reranker: Reranker, mode: str
) -> None:
    pipeline = bm25_pipeline(QwenRanker(top_k=3, **ranker_settings))
    data = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}
    result = pipeline.run(data) if mode == "sync" else await pipeline.run_async(data)
    ranked = result["ranker"]["documents"]
    retrieved = InMemoryBM25Retriever(
        document_store=pipeline.get_component("retriever").document_store, top_k=len(TEXTS)
    ).run(query=QUERY)["documents"]
    with_direct = direct_backend(ranker_settings, tiny_reranker)
    expected = with_direct.rerank(QUERY, [d.content for d in retrieved], top_n=3)
    assert [(d.id, d.score) for d in ranked] == [(retrieved[r.index].id, r.score) for r in expected]
    assert [d.content for d in ranked] == [r.document for r in expected]
    # The caller's meta, plus what the model read: each document whole, no window chosen.
    cut = {"truncated": False, "best_span": None}
    assert all(d.meta == {"title": f"Title {d.id[-1]}", "rank": int(d.id[-1]), **cut} for d in ranked)


async def test_run_overrides_and_untouched_input(tiny_reranker: Reranker, mode: str) -> None:
    ranker = QwenRanker(reranker=tiny_reranker, top_k=2)
    documents = make_documents()
    before = copy.deepcopy(documents)

    async def run(**kwargs: Any) -> list[Document]:
        if mode == "sync":
            return ranker.run(query=QUERY, documents=documents, **kwargs)["documents"]
        return (await ranker.run_async(query=QUERY, documents=documents, **kwargs))["documents"]

    scores = tiny_reranker.score(QUERY, TEXTS)
    best_first = sorted(scores, reverse=True)
    assert [d.score for d in await run()] == best_first[:2]
    assert [d.score for d in await run(top_k=4)] == best_first[:4]
    assert [d.score for d in await run(top_k=100)] == best_first
    threshold = best_first[2]
    assert [d.score for d in await run(top_k=5, score_threshold=threshold)] == best_first[:3]
    assert [d.score for d in await run(top_k=None, score_threshold=threshold)] == best_first[
        :2
    ]  # None: the default
    instructed = tiny_reranker.score(QUERY, TEXTS, instruction="Find Chinese facts")
    got = await run(top_k=5, instruction="Find Chinese facts")
    assert sorted(d.score for d in got) == sorted(instructed)
    assert documents == before and all(d.score is None for d in documents)
    assert await run(top_k=1) != [] and (await ranker.run_async(query=QUERY, documents=[]))["documents"] == []
    with pytest.raises(InvalidInputError, match="top_k must be"):
        await run(top_k=0)


def test_meta_fields_to_embed_reach_the_model(tiny_reranker: Reranker) -> None:
    ranker = QwenRanker(reranker=tiny_reranker, top_k=None, meta_fields_to_embed=["title", "absent"])
    ranked = ranker.run(query=QUERY, documents=make_documents())["documents"]
    texts = [f"Title {i}\n{text}" for i, text in enumerate(TEXTS)]
    scores = tiny_reranker.score(QUERY, texts)
    assert sorted((d.id, d.score) for d in ranked) == sorted((f"doc-{i}", s) for i, s in enumerate(scores))
    separated = QwenRanker(
        reranker=tiny_reranker, top_k=1, meta_fields_to_embed=["title"], meta_data_separator=" | "
    )
    best = separated.run(query=QUERY, documents=make_documents()[:1])["documents"][0]
    assert best.score == tiny_reranker.score(QUERY, [f"Title 0 | {TEXTS[0]}"])[0]


def test_bad_input_names_the_position(tiny_reranker: Reranker) -> None:
    ranker = QwenRanker(reranker=tiny_reranker)
    with pytest.raises(InvalidInputError, match=r"documents\[1\] must be a haystack Document"):
        ranker.run(query=QUERY, documents=[Document(content="a"), "b"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"documents\[0\] \(id 'x'\) has no text content"):
        ranker.run(query=QUERY, documents=[Document(id="x")])
    with pytest.raises(InvalidInputError, match="documents must be a list, got Document"):
        ranker.run(query=QUERY, documents=Document(content="a"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="ready reranker"):
        QwenRanker(reranker=tiny_reranker, device="cpu")
    with pytest.raises(InvalidInputError, match="base_url"):
        QwenRanker(base_url="ftp://nowhere")


def test_metadata_that_cannot_be_deep_copied_is_shared(tiny_reranker: Reranker) -> None:
    lock = threading.Lock()
    document = Document(id="locked", content=TEXTS[0], meta={"lock": lock, "tags": ["a"]})
    (out,) = QwenRanker(reranker=tiny_reranker).run(query=QUERY, documents=[document])["documents"]
    assert (
        out.meta["lock"] is lock
        and out.meta["tags"] == ["a"]
        and out.meta["tags"] is not document.meta["tags"]
    )
    assert out.id == "locked" and document.score is None


def test_serialisation_round_trip_without_secrets(monkeypatch: pytest.MonkeyPatch, fake_vllm: Any) -> None:
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "env-secret-123456")
    url = fake_vllm.url.replace("http://", "http://alice:url-password-789@")
    ranker = QwenRanker(
        base_url=url,
        top_k=4,
        score_threshold=0.1,
        instruction="Find capitals",
        meta_fields_to_embed=["title"],
        meta_data_separator=" - ",
        timeout=5.0,
        backend_options={"max_retries": 1},
    )
    data = ranker.to_dict()
    assert data["type"] == "haystack_qwen_rerank.ranker.QwenRanker"
    assert data["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["QWEN_RERANK_API_KEY"],
        "strict": False,
    }
    assert data["init_parameters"]["model"] is None
    restored = QwenRanker.from_dict(data)
    assert restored.to_dict() == data
    assert restored.base_url == fake_vllm.url and restored.top_k == 4 and restored.model is None
    pipeline = Pipeline()
    pipeline.add_component("ranker", ranker)
    text = pipeline.dumps()
    loaded = Pipeline.loads(text, allowed_modules=["haystack_qwen_rerank"])
    assert loaded.get_component("ranker").to_dict() == data
    pickled = pickle.dumps(ranker)
    unpickled = pickle.loads(pickled)
    assert unpickled.base_url == url
    assert unpickled.run(query=QUERY, documents=make_documents())["documents"]
    for shown in (repr(ranker), str(data), text, str(ranker.__getstate__())):
        assert "env-secret-123456" not in shown and "url-password-789" not in shown
    assert fake_vllm.rerank_requests[-1].headers.get("authorization") is not None


def test_warm_up_close_and_changed_settings(tiny_model_path: Path, fake_vllm: Any) -> None:
    ranker = QwenRanker(model=str(tiny_model_path), device="cpu")
    assert not ranker._backend.built
    ranker.warm_up()
    first = ranker._backend.get()
    ranker.warm_up()
    assert ranker._backend.get() is first
    ranker.close()
    assert not ranker._backend.built
    ranker.base_url, ranker.device = fake_vllm.url, None
    ranker.model = None
    ranker.run(query=QUERY, documents=make_documents())
    assert isinstance(ranker._backend.get(), VLLMReranker) and len(fake_vllm.rerank_requests) == 1


def test_a_shared_reranker_is_left_open(tiny_reranker: Reranker) -> None:
    ranker = QwenRanker(reranker=tiny_reranker)
    ranker.close()
    assert ranker._backend.get() is tiny_reranker
    assert "reranker" not in ranker.to_dict()["init_parameters"]
