"""FakeVLLMServer answers as the real vLLM does: the same requests to both, the same shapes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_rerank.testing.fake_vllm import FakeVLLMServer
from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.conftest import MAX_MODEL_LEN

pytestmark = [pytest.mark.external, pytest.mark.xdist_group("vllm")]

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/rerank", {"query": "a", "documents": ["b", "c"]}),
    ("/v1/rerank", {"query": "a", "documents": ["b", "c"], "top_n": 1}),
    ("/v1/rerank", {"query": "a", "documents": ["b " * 600]}),
    ("/v1/rerank", {"query": "a", "documents": []}),
    ("/v1/rerank", {"query": "a", "documents": ["b"], "model": "no-such-model"}),
    ("/score", {"queries": "a", "documents": ["b", "c"]}),
    ("/tokenize", {"prompt": "hello world"}),
    ("/tokenize", {"messages": [{"role": "query", "content": "q"}, {"role": "document", "content": "d"}]}),
]


@pytest.fixture(scope="module")
def fake(vllm_model: Path) -> Iterator[FakeVLLMServer]:
    with FakeVLLMServer(
        str(vllm_model), served_model_name=str(vllm_model), max_model_len=MAX_MODEL_LEN
    ) as server:
        yield server


def shape(value: Any) -> Any:
    """The keys and value types of a JSON answer, with lists cut to their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if key not in ("created", "permission")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REQUESTS)])
def test_the_fake_answers_as_vllm_does(
    vllm_plain: VLLMServer, fake: FakeVLLMServer, path: str, body: Any
) -> None:
    real = httpx.post(vllm_plain.url + path, json=body, timeout=60)
    ours = httpx.post(fake.url + path, json=body, timeout=60)
    assert ours.status_code == real.status_code
    real_json, our_json = real.json(), ours.json()
    assert shape(our_json) == shape(real_json)
    if real.status_code != 200:
        assert our_json["error"]["message"] == real_json["error"]["message"]
        assert our_json["error"]["type"] == real_json["error"]["type"]
    elif "usage" in real_json:
        assert our_json["usage"] == real_json["usage"]
        ranked = [r["index"] for r in real_json["results"]] if "results" in real_json else None
        assert ranked is None or [r["index"] for r in our_json["results"]] == ranked
    else:
        assert our_json["tokens"] == real_json["tokens"]


def test_models_list_the_same_fields_that_matter(vllm_plain: VLLMServer, fake: FakeVLLMServer) -> None:
    real = httpx.get(vllm_plain.url + "/v1/models", timeout=10).json()["data"][0]
    ours = httpx.get(fake.url + "/v1/models", timeout=10).json()["data"][0]
    assert (ours["id"], ours["max_model_len"]) == (real["id"], real["max_model_len"])
