"""Edges every adapter must meet: a key in backend_options never shown, Haystack's errors our own,
MTEB's instruction column checked and its queries sent to a fleet concurrently, Ray's ragged batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from haystack.utils import Secret

from haystack_qwen_rerank import QwenRanker
from langchain_qwen_rerank import QwenCrossEncoder
from langchain_qwen_rerank import QwenRerank as LangChainRerank
from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank
from qwen_rerank import InvalidInputError, Reranker
from qwen_rerank.integrations.mteb import MTEBReranker
from qwen_rerank.integrations.ray import RerankPredictor

SECRET = "sk-in-backend-options-4242"
PYDANTIC_ADAPTERS = [LangChainRerank, QwenCrossEncoder, LlamaIndexRerank]


def text_forms(adapter: Any) -> list[str]:
    """Every text form of an adapter: repr, str and JSON (pydantic), to_json/to_dict (LlamaIndex), to_dict."""
    if isinstance(adapter, QwenRanker):
        return [str(adapter.to_dict())]
    forms = [repr(adapter), str(adapter), adapter.model_dump_json()]
    if isinstance(adapter, LlamaIndexRerank):
        forms += [adapter.to_json(), str(adapter.to_dict())]
    return forms


@pytest.mark.parametrize("adapter_class", [*PYDANTIC_ADAPTERS, QwenRanker])
def test_a_key_in_backend_options_is_refused_naming_the_field(adapter_class: Any, fake_vllm: Any) -> None:
    with pytest.raises(InvalidInputError, match="api_key=") as info:
        adapter_class(base_url=fake_vllm.url, backend_options={"api_key": SECRET})
    assert SECRET not in str(info.value)
    assert info.value.__context__ is None or SECRET not in str(info.value.__context__)


@pytest.mark.parametrize("adapter_class", PYDANTIC_ADAPTERS)
def test_a_key_slipped_into_backend_options_is_never_shown(adapter_class: Any, fake_vllm: Any) -> None:
    adapter = adapter_class(base_url=fake_vllm.url, backend_options={"max_retries": 0})
    with pytest.raises(InvalidInputError, match="api_key="):
        adapter.backend_options = {"api_key": SECRET}
    # model_copy(update=...) runs no validation: the key gets in, and must still never show.
    copied = adapter.model_copy(update={"backend_options": {"api_key": SECRET, "max_retries": 0}})
    forms = text_forms(copied)
    assert forms and all(SECRET not in form for form in forms)
    assert "max_retries" in forms[0]


def test_a_key_slipped_into_haystack_backend_options_is_never_serialized(fake_vllm: Any) -> None:
    ranker = QwenRanker(
        base_url=fake_vllm.url, api_key=Secret.from_env_var("QWEN_RERANK_TEST_KEY", strict=False)
    )
    ranker.backend_options = {"api_key": SECRET}
    assert SECRET not in str(ranker.to_dict())
    with pytest.raises(InvalidInputError, match="api_key="):
        ranker.warm_up()  # the backend is checked on use


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"no_such_parameter": 1}, "no_such_parameter"),
        ({"api_key": "sk-plain"}, "api_key as a Secret"),
        ({"api_key": {"type": "nope"}}, "nope"),
        ({"backend_options": {"no_such_option": 1}}, "no_such_option"),
    ],
)
def test_haystack_from_dict_raises_our_error_with_the_fix(
    parameters: dict[str, Any], message: str, fake_vllm: Any
) -> None:
    data = QwenRanker(base_url=fake_vllm.url).to_dict()
    data["init_parameters"].update(parameters)
    with pytest.raises(InvalidInputError, match=message) as info:
        QwenRanker.from_dict(data)
    assert "QwenRanker.to_dict()" in str(info.value)
    with pytest.raises(InvalidInputError, match="takes the dict"):
        QwenRanker.from_dict([])  # type: ignore[arg-type]


def test_haystack_top_k_errors_say_top_k(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"^top_k must be a positive int"):
        QwenRanker(top_k=0, reranker=tiny_reranker)
    ranker = QwenRanker(reranker=tiny_reranker)
    with pytest.raises(InvalidInputError, match=r"^top_k must be a positive int"):
        ranker.run(query="q", documents=[], top_k=-1)


def test_ray_dict_batch_with_unequal_columns_is_named(fake_vllm: Any) -> None:
    predictor = RerankPredictor(base_url=fake_vllm.url)
    batch = {"query": np.array(["q", "q", "q"]), "document": np.array(["a", "b"])}
    with pytest.raises(InvalidInputError, match="'query' column has 3 rows and its 'document' column 2"):
        predictor(batch)


def mteb_predict(model: MTEBReranker, queries: list[dict[str, Any]], documents: list[dict[str, Any]]) -> Any:
    from qwen_rerank.integrations.mteb import local_reranking_task
    from tests.helpers import TINY_BEIR, TINY_RUN

    metadata = local_reranking_task(TINY_BEIR, TINY_RUN, top_k=3).metadata
    return model.predict(queries, documents, task_metadata=metadata, hf_split="test", hf_subset="default")


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            {"text": ["q a", "q b"], "query": ["q", "q"], "instruction": ["a", "b", "c"]},
            "3 instructions for 2",
        ),
        ({"text": ["q a", "q b"], "query": ["q", "q"], "instruction": ["a"]}, "1 instructions for 2"),
        ({"text": "q"}, "'text' column of an inputs1 batch must be a list of texts"),
        ({"text": ["q", 5]}, "Row 1 of the 'text' column"),
        ({"text": ["q a", "q b"], "query": ["q", "q"], "instruction": ["a", 3]}, "must be a str or None"),
    ],
)
def test_mteb_query_batches_are_checked(tiny_reranker: Reranker, batch: dict[str, Any], message: str) -> None:
    model = MTEBReranker(reranker=tiny_reranker)
    with pytest.raises(InvalidInputError, match=message):
        mteb_predict(model, [batch], [{"text": ["d1", "d2"]}])
    with pytest.raises(InvalidInputError, match="'text' column of an inputs2 batch"):
        mteb_predict(model, [{"text": ["q"]}], [{"text": "d"}])


def test_mteb_sends_the_queries_to_a_fleet_concurrently(fake_vllm: Any) -> None:
    model = MTEBReranker(fake_vllm.served_model_name, base_url=fake_vllm.url, max_concurrency=4)
    fake_vllm.add_fault("delay", seconds=0.3, times=4)
    queries = [f"query {k}" for k in range(4) for _ in range(2)]
    out = mteb_predict(model, [{"text": queries}], [{"text": [f"document {i}" for i in range(8)]}])
    assert out.shape == (8,)
    assert len(fake_vllm.rerank_requests) == 4  # one request per query
    assert fake_vllm.peak_in_flight >= 2
