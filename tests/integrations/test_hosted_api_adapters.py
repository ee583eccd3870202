"""The adapters reach a hosted API with backend_options={"api": ...}: its key, never QWEN_RERANK_API_KEY."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document

from langchain_qwen_rerank import QwenRerank
from qwen_rerank import InvalidInputError, LocalReranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-adapter-hosted-77"
OWN_KEY = "own-vllm-server-key"
QUERY = "What is the capital of China?"
TEXTS = ["Gravity attracts bodies.", "The capital of China is Beijing.", "Paris is in France."]


@pytest.fixture(scope="module")
def siliconflow(tiny_model_path: Path) -> Iterator[FakeHostedServer]:
    with FakeHostedServer("siliconflow", tiny_model_path, api_key=KEY) as server:
        yield server


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", KEY)
    monkeypatch.setenv("QWEN_RERANK_API_KEY", OWN_KEY)  # the key of the user's own servers


def test_langchain_reranks_through_a_hosted_api_with_the_providers_key(
    siliconflow: FakeHostedServer, keys: None, tiny_model_path: Path
) -> None:
    siliconflow.reset()
    siliconflow.add_fault("shuffle")
    compressor = QwenRerank(
        base_url=siliconflow.url,
        backend_options={"api": "siliconflow"},
        instruction="Find the capital city",
        top_n=2,
    )
    documents = [Document(page_content=text, id=f"d{i}") for i, text in enumerate(TEXTS)]
    got = compressor.compress_documents(documents, QUERY)
    local = LocalReranker(str(tiny_model_path), device="cpu", dtype="float32")
    expected = local.rerank(QUERY, TEXTS, top_n=2, instruction="Find the capital city")
    assert [d.id for d in got] == [f"d{r.index}" for r in expected]
    (request,) = siliconflow.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["instruction"] == "Find the capital city"
    shown = repr(compressor) + json.dumps(compressor.model_dump(mode="json"))
    assert KEY not in shown and OWN_KEY not in shown


def test_a_hosted_api_needs_no_base_url_and_a_missing_key_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    assert QwenRerank(backend_options={"api": "dashscope"}).base_url is None  # built, no I/O
    monkeypatch.delenv("DEEPINFRA_API_KEY", raising=False)
    monkeypatch.delenv("DEEPINFRA_TOKEN", raising=False)
    with pytest.raises(InvalidInputError, match="DEEPINFRA_API_KEY"):
        QwenRerank(backend_options={"api": "deepinfra"})
