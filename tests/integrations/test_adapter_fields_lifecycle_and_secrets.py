"""What both pydantic adapters share: no stale backend, close/aclose, pickling, secrets never written out."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from langchain_qwen_rerank import QwenCrossEncoder
from langchain_qwen_rerank import QwenRerank as LangChainRerank
from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank
from qwen_rerank import InvalidInputError, LocalReranker, RemoteConnectionError, Reranker, VLLMReranker

QUERY = "What is the capital of China?"
TEXTS = ["Paris is the capital of France.", "The capital of China is Beijing.", "Gravity pulls."]
ADAPTERS = [LangChainRerank, LlamaIndexRerank]
QUICK = {"max_retries": 0}


def run(adapter: Any) -> list[float]:
    """Rerank TEXTS with either adapter; the scores, best first."""
    if isinstance(adapter, LangChainRerank):
        docs = adapter.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
        return [d.metadata["relevance_score"] for d in docs]
    nodes = adapter.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in TEXTS], query_str=QUERY)
    return [n.score for n in nodes]


@pytest.mark.parametrize("adapter_class", ADAPTERS)
def test_a_changed_backend_field_rebuilds_the_backend(
    adapter_class: Any, fake_vllm: Any, closed_port_url: str
) -> None:
    adapter = adapter_class(base_url=closed_port_url, backend_options=QUICK, top_n=None)
    with pytest.raises(RemoteConnectionError):
        run(adapter)
    copied = adapter.model_copy(update={"base_url": fake_vllm.url})
    assert len(run(copied)) == 3 and len(fake_vllm.rerank_requests) == 1
    with pytest.raises(RemoteConnectionError):
        run(adapter)  # the original still goes where it was told
    adapter.base_url = fake_vllm.url
    assert len(run(adapter)) == 3 and len(fake_vllm.rerank_requests) == 2
    adapter.backend_options["max_documents_per_request"] = 1  # a change in place counts too
    run(adapter)
    assert len(fake_vllm.rerank_requests) == 5


@pytest.mark.parametrize("adapter_class", ADAPTERS)
def test_an_assignment_that_breaks_the_backend_is_refused(adapter_class: Any, fake_vllm: Any) -> None:
    adapter = adapter_class(base_url=fake_vllm.url)
    with pytest.raises(InvalidInputError, match="base_url"):
        adapter.base_url = "ftp://nowhere"
    with pytest.raises(InvalidInputError, match="local backend only"):
        adapter.device = "cpu"
    assert adapter.base_url == fake_vllm.url and adapter.device is None
    assert len(run(adapter)) == 3


@pytest.mark.parametrize("adapter_class", ADAPTERS)
async def test_close_releases_a_backend_the_adapter_built(
    adapter_class: Any, tiny_model_path: Path, tiny_reranker: Reranker, fake_vllm: Any, mode: str
) -> None:
    async def close(adapter: Any) -> None:
        if mode == "sync":
            adapter.close()
        else:
            await adapter.aclose()

    local = adapter_class(model=tiny_model_path, device="cpu", top_n=None)
    first = run(local)
    built = local._backend.get()
    assert isinstance(built, LocalReranker)
    await close(local)
    assert not local._backend.built
    assert run(local) == first and local._backend.get() is not built  # a later call loads it anew
    await close(local)

    remote = adapter_class(base_url=fake_vllm.url)
    client = remote._backend.get()
    run(remote)
    assert client._client.current is not None  # its pooled connections
    await close(remote)
    assert not remote._backend.built and client._client.current is None

    shared = adapter_class(reranker=tiny_reranker)
    await close(shared)
    assert shared._backend.get() is tiny_reranker  # not ours to close


@pytest.mark.parametrize("adapter_class", ADAPTERS)
def test_instances_pickle_into_working_objects(
    adapter_class: Any, tiny_model_path: Path, fake_vllm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "env-secret-654321")
    local = adapter_class(model=tiny_model_path, device="cpu", top_n=2, instruction="Find capitals")
    first = run(local)
    copy = pickle.loads(pickle.dumps(local))
    assert run(copy) == first and copy.top_n == 2 and copy.instruction == "Find capitals"
    assert copy._backend is not local._backend

    url = fake_vllm.url.replace("http://", "http://alice:url-password-789@")
    remote = adapter_class(base_url=url, api_key="given-secret-123456")
    restored = pickle.loads(pickle.dumps(remote))
    assert restored.base_url == url and restored.api_key.get_secret_value() == "given-secret-123456"
    assert len(run(restored)) == 3
    assert fake_vllm.rerank_requests[-1].headers.get("authorization")
    state = repr(remote.__getstate__())
    assert "url-password-789" not in state and "given-secret-123456" not in state


@pytest.mark.parametrize("adapter_class", [*ADAPTERS, QwenCrossEncoder])
def test_url_credentials_and_keys_are_never_written_out(adapter_class: Any, fake_vllm: Any) -> None:
    url = fake_vllm.url.replace("http://", "http://alice:url-password-789@")
    adapter = adapter_class(base_url=[url, url], api_key="given-secret-123456")
    forms = [repr(adapter), str(adapter), str(adapter.model_dump()), adapter.model_dump_json()]
    if isinstance(adapter, LlamaIndexRerank):
        forms += [adapter.to_json(), str(adapter.to_dict())]
    for form in forms:
        assert "url-password-789" not in form and "given-secret-123456" not in form
        assert "alice" not in form
    assert adapter.model_dump()["base_url"] == [fake_vllm.url, fake_vllm.url]
    with pytest.raises(InvalidInputError) as caught:
        adapter_class(base_url="http://alice:url-password-789@", api_key="given-secret-123456")
    text = f"{caught.value!r} {caught.value} {caught.value.__cause__!r} {caught.value.__context__!r}"
    assert "url-password-789" not in text and "given-secret-123456" not in text


def test_llamaindex_to_dict_from_dict_is_faithful(fake_vllm: Any) -> None:
    pp = LlamaIndexRerank(
        base_url=fake_vllm.url,
        top_n=None,
        score_threshold=0.0,
        instruction="Find capitals",
        keep_retrieval_score=True,
        metadata_mode=MetadataMode.NONE,
        timeout=5.0,
        backend_options={"max_retries": 1},
    )
    data = pp.to_dict()
    assert data["model"] is None
    for restored in (LlamaIndexRerank.from_dict(data), LlamaIndexRerank.from_json(pp.to_json())):
        assert restored.to_dict() == data
        assert restored.model is None and restored.metadata_mode == MetadataMode.NONE
        run(restored)
    assert all("model" not in r.body for r in fake_vllm.rerank_requests)  # the server's own model
    named = LlamaIndexRerank.from_dict({**data, "model": fake_vllm.served_model_name})
    run(named)
    assert fake_vllm.rerank_requests[-1].body["model"] == fake_vllm.served_model_name


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.NONE, MetadataMode.ALL])
def test_llamaindex_metadata_mode_chooses_what_is_scored(tiny_reranker: Reranker, mode: MetadataMode) -> None:
    nodes = [
        NodeWithScore(
            node=TextNode(
                id_=f"n{i}",
                text=text,
                metadata={"title": f"T{i}", "secret_note": "internal"},
                excluded_embed_metadata_keys=["secret_note"],
            )
        )
        for i, text in enumerate(TEXTS)
    ]
    out = LlamaIndexRerank(reranker=tiny_reranker, top_n=None, metadata_mode=mode).postprocess_nodes(
        nodes, query_str=QUERY
    )
    want = tiny_reranker.score(QUERY, [n.node.get_content(metadata_mode=mode) for n in nodes])
    assert sorted((n.node.node_id, n.score) for n in out) == sorted((f"n{i}", s) for i, s in enumerate(want))
    assert LlamaIndexRerank(reranker=tiny_reranker).metadata_mode == MetadataMode.EMBED


async def test_llamaindex_metadata_that_cannot_be_deep_copied(tiny_reranker: Reranker, mode: str) -> None:
    lock = threading.Lock()
    node = NodeWithScore(node=TextNode(id_="locked", text=TEXTS[1], metadata={"lock": lock}), score=0.5)
    pp = LlamaIndexRerank(reranker=tiny_reranker, keep_retrieval_score=True, metadata_mode=MetadataMode.NONE)
    if mode == "sync":
        (out,) = pp.postprocess_nodes([node], query_str=QUERY)
    else:
        (out,) = await pp.apostprocess_nodes([node], query_str=QUERY)
    assert out.node.metadata["lock"] is lock and out.node.metadata["retrieval_score"] == 0.5
    assert "retrieval_score" not in node.node.metadata and out.node.node_id == "locked"


def test_langchain_accepts_a_path_as_model(tiny_model_path: Path, tiny_reranker: Reranker) -> None:
    adapter = LangChainRerank(model=tiny_model_path, device="cpu", top_n=None)
    assert run(adapter) == pytest.approx(sorted(tiny_reranker.score(QUERY, TEXTS), reverse=True), abs=1e-6)
    assert adapter.model_dump()["model"] == str(tiny_model_path)
    with pytest.raises(InvalidInputError, match="ready reranker"):
        LangChainRerank(reranker=tiny_reranker, model="x")
    assert isinstance(VLLMReranker, type)
