"""Each adapter's rerank is one RERANKER span, sync and async, with LlamaIndex's own events alongside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openinference.semconv.trace import DocumentAttributes, RerankerAttributes, SpanAttributes
from opentelemetry.trace import StatusCode

QUERY = "What is the capital of China?"
TEXTS = ["Paris is in France.", "Beijing is the capital of China.", "Bananas are yellow."]
FRAMEWORKS = ["langchain", "llamaindex", "haystack"]


@pytest.fixture(params=["local", "remote"])
def settings(request: pytest.FixtureRequest, tiny_model_path: Path) -> dict[str, Any]:
    if request.param == "local":
        return {"model": tiny_model_path, "device": "cpu"}
    return {"base_url": request.getfixturevalue("fake_vllm").url, "backend_options": {"max_retries": 0}}


async def run_adapter(framework: str, mode: str, **settings: Any) -> list[tuple[str, Any]]:
    """Rerank TEXTS with the framework's adapter: (text, score or None) best first."""
    if framework == "langchain":
        from langchain_core.documents import Document

        from langchain_qwen_rerank import QwenRerank

        compressor = QwenRerank(top_n=2, **settings)
        docs = [Document(page_content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]
        out = (
            compressor.compress_documents(docs, QUERY)
            if mode == "sync"
            else await compressor.acompress_documents(docs, QUERY)
        )
        return [(d.page_content, d.metadata.get("relevance_score")) for d in out]
    if framework == "llamaindex":
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        from llamaindex_qwen_rerank import QwenRerank as Postprocessor

        postprocessor = Postprocessor(top_n=2, **settings)
        nodes = [
            NodeWithScore(node=TextNode(text=t, id_=f"doc-{i}"), score=None) for i, t in enumerate(TEXTS)
        ]
        bundle = QueryBundle(QUERY)
        got = (
            postprocessor.postprocess_nodes(nodes, bundle)
            if mode == "sync"
            else await postprocessor.apostprocess_nodes(nodes, query_bundle=bundle)
        )
        return [(n.node.get_content(), n.score) for n in got]
    from haystack import Document as HaystackDocument

    from haystack_qwen_rerank import QwenRanker

    ranker = QwenRanker(top_k=2, **settings)
    hdocs = [HaystackDocument(content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]
    result = ranker.run(QUERY, hdocs) if mode == "sync" else await ranker.run_async(QUERY, hdocs)
    return [(d.content, d.score) for d in result["documents"]]


def reranker_spans(spans: Any) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.name == "qwen_rerank.rerank"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_adapter_call_is_one_reranker_span(
    framework: str, mode: str, settings: dict[str, Any], spans: Any
) -> None:
    got = await run_adapter(framework, mode, **settings)
    (span,) = reranker_spans(spans)
    attributes = dict(span.attributes)
    assert attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] == "RERANKER"
    assert attributes[RerankerAttributes.RERANKER_TOP_K] == 2
    out = RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS
    ids = [attributes[f"{out}.{i}.{DocumentAttributes.DOCUMENT_ID}"] for i in range(2)]
    scores = [attributes[f"{out}.{i}.{DocumentAttributes.DOCUMENT_SCORE}"] for i in range(2)]
    # The adapter's own document ids, not positions.
    inputs = RerankerAttributes.RERANKER_INPUT_DOCUMENTS
    assert [attributes[f"{inputs}.{i}.{DocumentAttributes.DOCUMENT_ID}"] for i in range(3)] == [
        "doc-0",
        "doc-1",
        "doc-2",
    ]
    assert [TEXTS[int(i.removeprefix("doc-"))] for i in ids] == [text for text, _ in got]
    assert scores == [score for _, score in got]
    assert not any(text in str(value) for value in attributes.values() for text in [QUERY, *TEXTS])


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_adapter_trace_content_opts_in(framework: str, fake_vllm: Any, spans: Any) -> None:
    await run_adapter(framework, "async", base_url=fake_vllm.url, trace_content=True)
    (span,) = reranker_spans(spans)
    assert span.attributes[RerankerAttributes.RERANKER_QUERY] == QUERY
    inputs = RerankerAttributes.RERANKER_INPUT_DOCUMENTS
    assert [span.attributes[f"{inputs}.{i}.{DocumentAttributes.DOCUMENT_CONTENT}"] for i in range(3)] == TEXTS


@pytest.mark.parametrize("framework", FRAMEWORKS)
async def test_adapter_passthrough_and_failure_spans(
    framework: str, mode: str, fake_vllm: Any, spans: Any
) -> None:
    options = {"base_url": fake_vllm.url, "backend_options": {"max_retries": 0}}
    fake_vllm.add_fault("status", status=503, times=1)
    got = await run_adapter(framework, mode, on_error="passthrough", **options)
    assert [text for text, _ in got] == TEXTS[:2]
    (span,) = reranker_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["qwen_rerank.fallback"] is True
    assert span.attributes["error.type"] == "APIStatusError"

    spans.clear()
    fake_vllm.add_fault("status", status=503, times=1)
    with pytest.raises(Exception, match="503"):
        await run_adapter(framework, mode, **options)
    (span,) = reranker_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert "qwen_rerank.fallback" not in span.attributes


async def test_llamaindex_events_keep_firing_alongside_spans(fake_vllm: Any, spans: Any, mode: str) -> None:
    from llama_index.core.instrumentation import root_dispatcher  # type: ignore[attr-defined]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events import BaseEvent

    class Collector(BaseEventHandler):
        events: list[BaseEvent] = []  # noqa: RUF012 - pydantic field

        def handle(self, event: BaseEvent, **kwargs: Any) -> None:
            self.events.append(event)

    collector = Collector(events=[])
    root_dispatcher.add_event_handler(collector)
    try:
        got = await run_adapter("llamaindex", mode, base_url=fake_vllm.url)
    finally:
        root_dispatcher.event_handlers.remove(collector)
    names = [type(e).__name__ for e in collector.events]
    assert names.count("ReRankStartEvent") == 1 and names.count("ReRankEndEvent") == 1
    end = next(e for e in collector.events if type(e).__name__ == "ReRankEndEvent")
    assert [n.score for n in end.nodes] == [score for _, score in got]
    assert len(reranker_spans(spans)) == 1
