"""OpenTelemetry spans, caught by the SDK's in-memory exporter, with OpenInference's RERANKER names."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openinference.semconv.trace import (
    DocumentAttributes,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
)
from opentelemetry.trace import StatusCode

from qwen_rerank import LocalReranker, Reranker, RerankResult, VLLMReranker
from tests.helpers import ROOT

QUERY = "What is the capital of China?"
DOCS = ["Paris is in France.", "Beijing is the capital of China.", "Bananas are yellow."]
SECRET_QUERY = "what is my diagnosis"

KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND
RERANKER = OpenInferenceSpanKindValues.RERANKER.value
INPUTS = RerankerAttributes.RERANKER_INPUT_DOCUMENTS
OUTPUTS = RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS
DOC_ID = DocumentAttributes.DOCUMENT_ID
DOC_SCORE = DocumentAttributes.DOCUMENT_SCORE
DOC_CONTENT = DocumentAttributes.DOCUMENT_CONTENT


@pytest.fixture(params=["local", "remote"])
def backend(request: pytest.FixtureRequest, tiny_model_path: Path) -> Iterator[Reranker]:
    """A fresh backend of each kind (fresh, so a test may set trace_content on it)."""
    if request.param == "local":
        yield LocalReranker(str(tiny_model_path), device="cpu")
    else:
        with VLLMReranker(request.getfixturevalue("fake_vllm").url) as remote:
            yield remote


async def rerank(reranker: Reranker, mode: str, **kwargs: Any) -> list[RerankResult]:
    if mode == "sync":
        return reranker.rerank(QUERY, DOCS, **kwargs)
    return await reranker.arerank(QUERY, DOCS, **kwargs)


def only_span(spans: Any) -> Any:
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


def documents(attributes: Any, prefix: str) -> list[dict[str, Any]]:
    """The flattened ``prefix.N.document.*`` attributes, as one dict per document."""
    out: list[dict[str, Any]] = []
    while any(key.startswith(f"{prefix}.{len(out)}.") for key in attributes):
        head = f"{prefix}.{len(out)}."
        out.append({key[len(head) :]: value for key, value in attributes.items() if key.startswith(head)})
    return out


def no_text(attributes: Any) -> None:
    values = [str(value) for value in attributes.values()]
    for text in [QUERY, SECRET_QUERY, *DOCS]:
        assert not any(text in value for value in values), f"{text!r} reached the span"


def test_our_names_are_openinference_names() -> None:
    from qwen_rerank import _tracing

    assert _tracing.SPAN_KIND == KIND
    assert _tracing.RERANKER == RERANKER
    assert _tracing.MODEL_NAME == RerankerAttributes.RERANKER_MODEL_NAME
    assert _tracing.QUERY == RerankerAttributes.RERANKER_QUERY
    assert _tracing.TOP_K == RerankerAttributes.RERANKER_TOP_K
    assert (_tracing.INPUT_DOCUMENTS, _tracing.OUTPUT_DOCUMENTS) == (INPUTS, OUTPUTS)
    assert (_tracing.DOCUMENT_ID, _tracing.DOCUMENT_SCORE, _tracing.DOCUMENT_CONTENT) == (
        DOC_ID,
        DOC_SCORE,
        DOC_CONTENT,
    )
    assert _tracing.TOKENS_PROMPT == SpanAttributes.LLM_TOKEN_COUNT_PROMPT
    assert _tracing.TOKENS_TOTAL == SpanAttributes.LLM_TOKEN_COUNT_TOTAL
    assert _tracing.INPUT_VALUE == SpanAttributes.INPUT_VALUE


async def test_a_rerank_call_is_one_reranker_span(backend: Reranker, spans: Any, mode: str) -> None:
    results = await rerank(backend, mode, top_n=2)
    span = only_span(spans)
    attributes = dict(span.attributes)
    assert attributes[KIND] == RERANKER
    assert attributes[RerankerAttributes.RERANKER_TOP_K] == 2
    assert attributes["qwen_rerank.backend"] == (
        "vllm" if isinstance(backend, VLLMReranker) else "LocalReranker"
    )
    model = attributes[RerankerAttributes.RERANKER_MODEL_NAME]
    assert model == (getattr(backend, "model_name", None) or f"<server default> at {backend.base_urls[0]}")
    assert documents(attributes, INPUTS) == [{DOC_ID: str(i)} for i in range(len(DOCS))]
    assert documents(attributes, OUTPUTS) == [{DOC_ID: str(r.index), DOC_SCORE: r.score} for r in results]
    no_text(attributes)
    assert span.status.status_code is StatusCode.UNSET


async def test_text_only_with_trace_content(backend: Reranker, spans: Any, mode: str) -> None:
    backend.trace_content = True
    results = await rerank(backend, mode)
    attributes = dict(only_span(spans).attributes)
    assert attributes[RerankerAttributes.RERANKER_QUERY] == QUERY
    assert [d[DOC_CONTENT] for d in documents(attributes, INPUTS)] == DOCS
    assert [d[DOC_CONTENT] for d in documents(attributes, OUTPUTS)] == [r.document for r in results]


async def test_remote_span_has_usage_replica_and_retries(fake_vllm: Any, spans: Any, mode: str) -> None:
    url = fake_vllm.url.replace("http://", "http://user:hunter2@")
    fake_vllm.add_fault("status", status=503, times=1)  # the first attempt fails, the retry answers
    with VLLMReranker(url, api_key="sk-secret", retry_backoff=0.01) as reranker:
        await rerank(reranker, mode)
        usage = reranker.last_usage
    attributes = dict(only_span(spans).attributes)
    assert usage is not None and usage.prompt_tokens
    assert attributes[SpanAttributes.LLM_TOKEN_COUNT_PROMPT] == usage.prompt_tokens
    assert attributes["qwen_rerank.attempts"] == 2
    assert attributes["qwen_rerank.retries"] == 1
    assert attributes["qwen_rerank.replica_url"] == f"{fake_vllm.url}/v1/rerank"
    text = repr(attributes)
    assert "hunter2" not in text and "sk-secret" not in text


async def test_a_failure_is_recorded_on_the_span(closed_port_url: str, spans: Any, mode: str) -> None:
    reranker = VLLMReranker(closed_port_url, max_retries=1, retry_backoff=0.01)
    with reranker, pytest.raises(Exception, match="Could not connect"):
        await rerank(reranker, mode)
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RemoteConnectionError"
    assert [e.attributes["exception.type"].rsplit(".", 1)[-1] for e in span.events] == [
        "RemoteConnectionError"
    ]
    assert span.attributes["qwen_rerank.attempts"] == 2
    assert span.attributes["qwen_rerank.retries"] == 1


async def test_passthrough_is_recorded_on_the_span(fake_vllm: Any, spans: Any, mode: str) -> None:
    fake_vllm.add_fault("garbage", times=1)
    with VLLMReranker(fake_vllm.url, max_retries=0) as reranker:
        results = await rerank(reranker, mode, top_n=2, on_error="passthrough")
    span = only_span(spans)
    attributes = dict(span.attributes)
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "MalformedResponseError"
    assert attributes["qwen_rerank.fallback"] is True
    # The documents given back, in retrieval order, with no score: the model scored none.
    assert documents(attributes, OUTPUTS) == [{DOC_ID: "0"}, {DOC_ID: "1"}]
    assert [r.index for r in results] == [0, 1]


@pytest.mark.parametrize("method", ["score_many", "rerank_many"])
async def test_many_queries_nest_one_child_per_request(
    backend: Reranker, spans: Any, method: str, mode: str
) -> None:
    requests = [(QUERY, DOCS), ("Why is the sky blue?", DOCS[:2]), ("empty", [])]
    call = getattr(backend, method if mode == "sync" else f"a{method}")
    out = call(requests) if mode == "sync" else await call(requests)
    finished = spans.get_finished_spans()
    parent = [s for s in finished if s.name == f"qwen_rerank.{method}"]
    assert len(parent) == 1
    children = [s for s in finished if s.parent is not None and s.parent.span_id == parent[0].context.span_id]
    assert len(children) == len(requests) == len(finished) - 1
    assert parent[0].attributes["qwen_rerank.requests"] == 3
    by_request = sorted(children, key=lambda s: s.attributes["qwen_rerank.request_index"])
    for child, (_, docs), got in zip(by_request, requests, out, strict=True):
        assert child.attributes[KIND] == RERANKER
        assert len(documents(child.attributes, INPUTS)) == len(docs)
        scores = sorted(d[DOC_SCORE] for d in documents(child.attributes, OUTPUTS))
        want = got if method == "score_many" else [r.score for r in got]
        assert scores == sorted(want)
        no_text(child.attributes)


def test_no_opentelemetry_import_at_import_qwen_rerank() -> None:
    code = (
        "import sys, qwen_rerank, qwen_rerank.remote\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_without_opentelemetry_rerank_works_and_traces_nothing(fake_vllm: Any) -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "from qwen_rerank import VLLMReranker\n"
        f"r = VLLMReranker({fake_vllm.url!r})\n"
        "print(len(r.rerank('q', ['a', 'b'])), len(r.rerank_many([('q', ['a'])])))\n"
        "from qwen_rerank import _tracing; print(_tracing._api)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["2", "1", "None"]


async def test_a_score_call_is_one_span_in_input_order(backend: Reranker, spans: Any, mode: str) -> None:
    scores = backend.score(QUERY, DOCS) if mode == "sync" else await backend.ascore(QUERY, DOCS)
    span = only_span(spans)
    assert span.name == "qwen_rerank.score"
    assert span.attributes[KIND] == RERANKER
    out = documents(dict(span.attributes), OUTPUTS)
    assert out == [{DOC_ID: str(i), DOC_SCORE: s} for i, s in enumerate(scores)]
    no_text(dict(span.attributes))


def test_langchain_cross_encoder_scores_under_spans(fake_vllm: Any, spans: Any) -> None:
    from langchain_qwen_rerank import QwenCrossEncoder

    scores = QwenCrossEncoder(base_url=fake_vllm.url).score([(QUERY, DOCS[0]), (QUERY, DOCS[1])])
    # Pairs are grouped by query into score_many: one parent, one child for the one query.
    finished = spans.get_finished_spans()
    (parent,) = [s for s in finished if s.name == "qwen_rerank.score_many"]
    (child,) = [s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id]
    assert sorted(d[DOC_SCORE] for d in documents(dict(child.attributes), OUTPUTS)) == sorted(scores)
