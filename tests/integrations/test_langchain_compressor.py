"""langchain_qwen_rerank.QwenRerank through LangChain's own entry points, on the tiny model."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings.fake import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_qwen_rerank import QwenRerank
from qwen_rerank import APIStatusError, InvalidInputError, ModelLoadError, Reranker, VLLMReranker
from tests.helpers import ThreadRecorder

QUERY = "What is the capital of China?"
TEXTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "China is a country in East Asia with a population of over 1.4 billion.",
    "Paris is the capital of France.",
    "Emoji soup 🐼🎋 and a café in São Paulo.",
]


def make_documents() -> list[Document]:
    return [
        Document(page_content=text, id=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["a", {"b": i}]})
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture(params=["local", "remote"])
def backend(request: pytest.FixtureRequest, tiny_reranker: Reranker) -> Iterator[Reranker]:
    """The tiny model in this process, or served by the fake vLLM server over loopback HTTP."""
    if request.param == "local":
        yield tiny_reranker
    else:
        with VLLMReranker(request.getfixturevalue("fake_vllm").url) as remote:
            yield remote


_SCORES: dict[tuple[str, tuple[str, ...], str | None], list[float]] = {}


def expected(
    backend: Reranker, texts: list[str], *, top_n: int | None = None, instruction: str | None = None
) -> list[tuple[int, float]]:
    """(index, score) pairs best first, from the backend's own scores (cached per kind of backend)."""
    key = (type(backend).__name__, tuple(texts), instruction)
    if key not in _SCORES:
        _SCORES[key] = backend.score(QUERY, texts, instruction=instruction)
    scores = _SCORES[key]
    return [(i, scores[i]) for i in sorted(range(len(texts)), key=lambda i: -scores[i])][:top_n]


def test_tiny_model_tells_the_documents_apart(backend: Reranker) -> None:
    # Order assertions below would be empty if every score were the same.
    assert len({round(s, 6) for s in backend.score(QUERY, TEXTS)}) == len(TEXTS)


def test_compress_returns_scored_copies_best_first(backend: Reranker) -> None:
    documents = make_documents()
    before = copy.deepcopy(documents)
    compressed = QwenRerank(reranker=backend, top_n=None).compress_documents(documents, QUERY)

    want = expected(backend, TEXTS)
    assert [(int(d.id.split("-")[1]), d.metadata["relevance_score"]) for d in compressed] == want  # type: ignore[union-attr]
    for doc in compressed:
        original = documents[int(doc.id.split("-")[1])]  # type: ignore[union-attr]
        assert doc is not original and doc.metadata is not original.metadata
        assert doc.page_content == original.page_content
        assert type(doc.metadata["relevance_score"]) is float
        added = {"truncated": False, "best_span": None}  # what the model read: all of it
        # A server also reports the call's tokens; a local model has none to report.
        assert ("rerank_usage" in doc.metadata) == isinstance(backend, VLLMReranker)
        ours = ("relevance_score", "rerank_usage")
        assert {k: v for k, v in doc.metadata.items() if k not in ours} == {
            **original.metadata,
            **added,
        }
        assert doc.metadata["tags"] is not original.metadata["tags"]  # a deep copy
    assert documents == before  # the caller's documents are untouched
    assert all("relevance_score" not in d.metadata for d in documents)


@pytest.mark.parametrize(("top_n", "count"), [(None, 6), (1, 1), (3, 3), (6, 6), (50, 6)])
def test_top_n_edges(backend: Reranker, top_n: int | None, count: int) -> None:
    compressed = QwenRerank(reranker=backend, top_n=top_n).compress_documents(make_documents(), QUERY)
    assert [d.id for d in compressed] == [f"doc-{i}" for i, _ in expected(backend, TEXTS)[:count]]


def test_top_n_defaults_to_three(tiny_reranker: Reranker) -> None:
    assert len(QwenRerank(reranker=tiny_reranker).compress_documents(make_documents(), QUERY)) == 3


def test_score_threshold_keeps_scores_at_least_the_threshold(backend: Reranker) -> None:
    scores = [score for _, score in expected(backend, TEXTS)]
    threshold = scores[2]  # exactly the third score: "at least" keeps it
    compressed = QwenRerank(reranker=backend, top_n=None, score_threshold=threshold).compress_documents(
        make_documents(), QUERY
    )
    assert [d.metadata["relevance_score"] for d in compressed] == scores[:3]


def test_instruction_reaches_the_model(backend: Reranker) -> None:
    instruction = "Given a geography question, find the passage naming the city"
    compressed = QwenRerank(reranker=backend, top_n=None, instruction=instruction).compress_documents(
        make_documents(), QUERY
    )
    want = expected(backend, TEXTS, instruction=instruction)
    assert [d.metadata["relevance_score"] for d in compressed] == [s for _, s in want]
    assert want != expected(backend, TEXTS)


def test_empty_list_returns_empty_without_loading_the_model(tmp_path: Any) -> None:
    compressor = QwenRerank(model=str(tmp_path / "no-such-model"))
    assert compressor.compress_documents([], QUERY) == []
    assert compressor.rerank([], QUERY) == []
    # The backend is built on first real use, and a bad model path then says so.
    with pytest.raises(ModelLoadError, match="no-such-model"):
        compressor.compress_documents(make_documents(), QUERY)


async def test_async_empty_list_returns_empty_without_loading_the_model(tmp_path: Any) -> None:
    compressor = QwenRerank(model=str(tmp_path / "no-such-model"))
    assert await compressor.acompress_documents([], QUERY) == []
    assert await compressor.arerank([], QUERY) == []


def test_backend_built_from_settings_once_and_shared_by_copies(tiny_model_path: Any) -> None:
    compressor = QwenRerank(model=str(tiny_model_path), device="cpu", max_length=512, top_n=None)
    results: list[list[str | None]] = []

    def run() -> None:
        results.append([d.id for d in compressor.compress_documents(make_documents(), QUERY)])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    backend = compressor._backend.get()
    assert backend.max_length == 512 and str(backend.device) == "cpu"  # type: ignore[attr-defined]
    assert copy.deepcopy(compressor)._backend.get() is backend
    assert compressor.model_copy(update={"top_n": 1})._backend.get() is backend


# -- through LangChain's entry points -------------------------------------------------------------


def vector_store_retriever() -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(make_documents())
    return store.as_retriever(search_kwargs={"k": len(TEXTS)})


def lambda_retriever() -> Any:
    return RunnableLambda(lambda query: make_documents())


@pytest.mark.parametrize("make_retriever", [vector_store_retriever, lambda_retriever])
async def test_contextual_compression_retriever(
    backend: Reranker, make_retriever: Callable[[], Any], mode: str
) -> None:
    recorder = ThreadRecorder(backend)
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(reranker=recorder, top_n=4), base_retriever=make_retriever()
    )
    if mode == "sync":
        docs = retriever.invoke(QUERY)
    else:
        docs = await retriever.ainvoke(QUERY)
    want = expected(backend, TEXTS, top_n=4)
    assert [d.id for d in docs] == [f"doc-{i}" for i, _ in want]
    # The vector store hands the documents over in another order, so batches differ and the
    # scores may differ in the last float bits.
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([s for _, s in want], abs=1e-6)
    if mode == "async":
        # Native async: the backend's async path, on the event loop's thread, not a worker thread.
        assert recorder.calls == [("async", threading.get_ident())]
    else:
        assert [kind for kind, _ in recorder.calls] == ["sync"]


async def test_inside_an_lcel_chain(backend: Reranker, mode: str) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(reranker=backend, top_n=2), base_retriever=vector_store_retriever()
    )
    chain = {
        "context": retriever | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs)),
        "question": RunnablePassthrough(),
    } | RunnableLambda(lambda x: f"Context:\n{x['context']}\nQuestion: {x['question']}")
    prompt = chain.invoke(QUERY) if mode == "sync" else await chain.ainvoke(QUERY)
    best = [TEXTS[i] for i, _ in expected(backend, TEXTS, top_n=2)]
    assert prompt == "Context:\n" + "\n".join(best) + f"\nQuestion: {QUERY}"


# -- rerank(): the CohereRerank-style call ----------------------------------------------------------


async def test_rerank_accepts_strings_documents_and_dicts(backend: Reranker, mode: str) -> None:
    documents: list[Any] = [
        TEXTS[0],
        Document(page_content=TEXTS[1]),
        {"text": TEXTS[2]},
        {"page_content": TEXTS[3], "metadata": {}},
        TEXTS[4],
        TEXTS[5],
    ]
    compressor = QwenRerank(reranker=backend, top_n=2)
    if mode == "sync":
        default, everything = (
            compressor.rerank(documents, QUERY),
            compressor.rerank(documents, QUERY, top_n=None),
        )
    else:
        default = await compressor.arerank(documents, QUERY)
        everything = await compressor.arerank(documents, QUERY, top_n=None)
    want = [{"index": i, "relevance_score": s} for i, s in expected(backend, TEXTS)]
    assert everything == want
    assert default == want[:2]


def test_rerank_top_n_override_is_validated(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match="top_n"):
        QwenRerank(reranker=tiny_reranker).rerank(TEXTS, QUERY, top_n=0)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"top_n": 0}, "top_n must be a positive int or None"),
        ({"top_n": -2}, "top_n must be a positive int or None"),
        ({"top_n": True}, "top_n"),
        ({"top_n": "3"}, "top_n"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"score_threshold": "high"}, "score_threshold"),
        ({"instruction": 7}, "instruction must be a str"),
        ({"base_url": "http://127.0.0.1:9", "device": "cpu"}, r"local backend only \(device\)"),
        ({"timeout": 5.0}, r"remote vLLM backend only \(timeout\)"),
    ],
)
def test_bad_settings_raise_our_error(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        QwenRerank(**settings)
    assert isinstance(info.value, ValueError)


def test_a_ready_reranker_excludes_other_backend_settings(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"backend settings \(device\)"):
        QwenRerank(reranker=tiny_reranker, device="cpu")


def test_wrong_types_and_unknown_fields_are_rejected_by_pydantic() -> None:
    with pytest.raises(ValueError, match="top_k"):
        QwenRerank(top_k=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="instance of Reranker"):
        QwenRerank(reranker="not a reranker")  # type: ignore[arg-type]


def test_document_without_text_is_named_by_position(tiny_reranker: Reranker) -> None:
    documents = make_documents()
    documents[4].page_content = None  # type: ignore[assignment]  # pydantic does not check assignment
    with pytest.raises(InvalidInputError, match=r"documents\[4\] has content of type NoneType"):
        QwenRerank(reranker=tiny_reranker).compress_documents(documents, QUERY)


def test_non_documents_are_named_by_position(tiny_reranker: Reranker) -> None:
    compressor = QwenRerank(reranker=tiny_reranker)
    with pytest.raises(InvalidInputError, match=r"documents\[1\] must be a langchain_core Document, got str"):
        compressor.compress_documents([make_documents()[0], "plain text"], QUERY)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match=r"documents\[2\] is a dict without a 'text'"):
        compressor.rerank(["a", {"text": "b"}, {"body": "c"}], QUERY)
    with pytest.raises(InvalidInputError, match=r"documents\[0\] must be a str, a Document or a dict"):
        compressor.rerank([b"bytes"], QUERY)  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="query must be a str"):
        compressor.compress_documents(make_documents(), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="documents must be a list, got str"):
        compressor.rerank("one bare string", QUERY)


async def test_async_bad_input_raises_the_same_errors(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"documents\[0\]"):
        await QwenRerank(reranker=tiny_reranker).acompress_documents([{"text": "x"}], QUERY)  # type: ignore[list-item]


# -- secrets and serialisation ----------------------------------------------------------------------


def test_api_key_comes_from_the_environment_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "env-secret-123")
    from_env = QwenRerank(base_url="http://127.0.0.1:9")
    explicit = QwenRerank(base_url="http://127.0.0.1:9", api_key="given-secret-456")
    assert from_env.api_key is not None and from_env.api_key.get_secret_value() == "env-secret-123"
    assert explicit.api_key is not None and explicit.api_key.get_secret_value() == "given-secret-456"
    for compressor, secret in ((from_env, "env-secret-123"), (explicit, "given-secret-456")):
        for text in (
            repr(compressor),
            str(compressor),
            str(compressor.model_dump()),
            compressor.model_dump_json(),
        ):
            assert secret not in text
        assert "api_key" not in compressor.model_dump()


def test_api_key_is_ignored_by_the_local_backend(
    monkeypatch: pytest.MonkeyPatch, tiny_reranker: Reranker
) -> None:
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "env-secret-123")
    # A key in the environment must not break a local (or ready-made) backend.
    assert QwenRerank(reranker=tiny_reranker).compress_documents(make_documents(), QUERY)


def test_serialises_without_the_backend(tiny_reranker: Reranker) -> None:
    compressor = QwenRerank(reranker=tiny_reranker, top_n=5, instruction="x")
    dumped = compressor.model_dump()
    assert "reranker" not in dumped and dumped["top_n"] == 5 and dumped["instruction"] == "x"
    assert QwenRerank.model_validate_json(compressor.model_dump_json()).top_n == 5


# -- the remote backend chosen by base_url ----------------------------------------------------------


async def test_base_url_selects_the_vllm_backend(fake_vllm: Any, mode: str) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(base_url=fake_vllm.url, top_n=None), base_retriever=lambda_retriever()
    )
    docs = retriever.invoke(QUERY) if mode == "sync" else await retriever.ainvoke(QUERY)
    with VLLMReranker(fake_vllm.url) as direct:
        want = [(r.index, r.score) for r in direct.rerank(QUERY, TEXTS)]
    assert [(d.id, d.metadata["relevance_score"]) for d in docs] == [(f"doc-{i}", s) for i, s in want]
    bodies = [r.body for r in fake_vllm.rerank_requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # ours, then the direct call: the same request
    # Left at its default, the model name is not sent: the server uses whatever model it serves.
    assert "model" not in bodies[0]


def test_explicit_model_name_is_sent_to_the_server(fake_vllm: Any) -> None:
    compressor = QwenRerank(base_url=fake_vllm.url, model="Qwen/Qwen3-Reranker-0.6B")
    assert compressor.compress_documents(make_documents(), QUERY)
    assert fake_vllm.rerank_requests[0].body["model"] == "Qwen/Qwen3-Reranker-0.6B"
    with pytest.raises(APIStatusError, match="does not exist") as info:
        QwenRerank(base_url=fake_vllm.url, model="Qwen/Qwen3-Reranker-8B").compress_documents(
            make_documents(), QUERY
        )
    assert info.value.status_code == 404


def test_api_key_reaches_the_server_as_a_bearer_token(
    fake_vllm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_vllm.api_key = "server-key-789"
    monkeypatch.delenv("QWEN_RERANK_API_KEY", raising=False)
    with pytest.raises(APIStatusError) as info:
        QwenRerank(base_url=fake_vllm.url).compress_documents(make_documents(), QUERY)
    assert info.value.status_code == 401
    assert QwenRerank(base_url=fake_vllm.url, api_key="server-key-789").compress_documents(
        make_documents(), QUERY
    )
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "server-key-789")
    assert QwenRerank(base_url=fake_vllm.url).compress_documents(make_documents(), QUERY)
    assert fake_vllm.rerank_requests[-1].headers["authorization"] == "Bearer server-key-789"


def test_backend_options_reach_the_vllm_backend(fake_vllm: Any) -> None:
    compressor = QwenRerank(
        base_url=fake_vllm.url, timeout=7.5, top_n=None, backend_options={"max_documents_per_request": 2}
    )
    docs = compressor.compress_documents(make_documents(), QUERY)
    assert len(docs) == len(TEXTS)
    assert [len(r.body["documents"]) for r in fake_vllm.rerank_requests] == [2, 2, 2]
    # The remote backend is built with the compressor, so bad settings fail at once.
    with pytest.raises(TypeError, match="no_such_option"):
        QwenRerank(base_url=fake_vllm.url, backend_options={"no_such_option": 1})
    with pytest.raises(InvalidInputError, match="timeout"):
        QwenRerank(base_url=fake_vllm.url, timeout=-1.0)
