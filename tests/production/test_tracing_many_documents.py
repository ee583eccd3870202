"""A span of any number of documents keeps its kind, model and top result, within the SDK's
attribute limit, without a warning per dropped attribute; many-queries spans are built off the loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

from qwen_rerank import Reranker, VLLMReranker
from tests.helpers import LengthReranker

KIND = "openinference.span.kind"
MODEL = "reranker.model_name"
TOP = "reranker.output_documents.0.document."
LIMIT = 128  # the SDK's default OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT


def documents(count: int) -> list[str]:
    return [f"document number {i} " + "x" * (i % 37) for i in range(count)]


def recorded(attributes: Any, prefix: str) -> int:
    return len({key.split(".")[2] for key in attributes if key.startswith(prefix + ".")})


@pytest.fixture(params=["length", "remote"])
def backend(request: pytest.FixtureRequest) -> Iterator[Reranker]:
    if request.param == "length":
        yield LengthReranker()
    else:
        with VLLMReranker(request.getfixturevalue("fake_vllm").url) as remote:
            yield remote


@pytest.mark.parametrize("content", [False, True])
@pytest.mark.parametrize("count", [40, 100, 300])
def test_a_big_rerank_keeps_what_identifies_it(
    backend: Reranker, spans: Any, caplog: pytest.LogCaptureFixture, content: bool, count: int
) -> None:
    backend.trace_content = content
    caplog.set_level(logging.WARNING)
    results = backend.rerank("which one?", documents(count))
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes)
    assert attributes[KIND] == "RERANKER"
    assert attributes[MODEL] and attributes["qwen_rerank.backend"]
    assert attributes[TOP + "id"] == str(results[0].index)
    assert attributes[TOP + "score"] == results[0].score
    assert span.dropped_attributes == 0 and len(attributes) <= LIMIT
    inputs = recorded(attributes, "reranker.input_documents")
    outputs = recorded(attributes, "reranker.output_documents")
    assert inputs + attributes.get("qwen_rerank.input_documents_omitted", 0) == count
    assert outputs + attributes.get("qwen_rerank.output_documents_omitted", 0) == count
    assert outputs >= 10
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


def test_a_big_score_call_keeps_what_identifies_it(backend: Reranker, spans: Any) -> None:
    scores = backend.score("which one?", documents(200))
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes)
    assert attributes[KIND] == "RERANKER" and attributes[MODEL]
    assert attributes[TOP + "score"] == scores[0]
    assert span.dropped_attributes == 0
    assert attributes["qwen_rerank.output_documents_omitted"] == 200 - recorded(
        attributes, "reranker.output_documents"
    )


class _StartedOn(SpanProcessor):
    """Records the thread each span starts on, while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.threads: dict[str, set[int]] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.armed:
            self.threads.setdefault(span.name, set()).add(threading.get_ident())


@pytest.fixture(scope="module")
def started_on(_exporter: Any) -> _StartedOn:
    processor = _StartedOn()
    trace.get_tracer_provider().add_span_processor(processor)  # type: ignore[attr-defined]
    return processor


@pytest.mark.parametrize("method", ["ascore_many", "arerank_many"])
async def test_many_queries_spans_are_built_off_the_event_loop(
    spans: Any, started_on: _StartedOn, method: str
) -> None:
    requests = [(f"query {i}", documents(150)) for i in range(30)]
    started_on.armed, started_on.threads = True, {}
    try:
        await getattr(LengthReranker(), method)(requests)
    finally:
        started_on.armed = False
    children = [s for s in spans.get_finished_spans() if s.name == "qwen_rerank.rerank"]
    assert len(children) == len(requests)
    assert all(s.dropped_attributes == 0 and s.attributes[KIND] == "RERANKER" for s in children)
    assert threading.get_ident() not in started_on.threads["qwen_rerank.rerank"]
