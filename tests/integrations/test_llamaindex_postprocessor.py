"""llamaindex_qwen_rerank.QwenRerank through LlamaIndex's own entry points, on the tiny model."""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Document, MockEmbedding, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation import root_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import (
    ImageNode,
    MediaResource,
    MetadataMode,
    Node,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from pydantic import Field

from llamaindex_qwen_rerank import QwenRerank
from qwen_rerank import InvalidInputError, Reranker, VLLMReranker
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


def make_nodes() -> list[NodeWithScore]:
    """Retrieved nodes with retrieval scores, and metadata that the EMBED view partly shows."""
    return [
        NodeWithScore(
            node=TextNode(
                id_=f"node-{i}",
                text=text,
                metadata={"title": f"Doc {i}", "internal": {"rank": i}},
                excluded_embed_metadata_keys=["internal"],
            ),
            score=1.0 - i / 10,
        )
        for i, text in enumerate(TEXTS)
    ]


def embed_texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


class EventCollector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture(params=["local", "remote"])
def backend(request: pytest.FixtureRequest, tiny_reranker: Reranker) -> Iterator[Reranker]:
    """The tiny model in this process, or served by the fake vLLM server over loopback HTTP."""
    if request.param == "local":
        yield tiny_reranker
    else:
        with VLLMReranker(request.getfixturevalue("fake_vllm").url) as remote:
            yield remote


@pytest.fixture
def instrumentation() -> Iterator[EventCollector]:
    collector = EventCollector()
    root_dispatcher.add_event_handler(collector)
    yield collector
    root_dispatcher.event_handlers.remove(collector)


_SCORES: dict[tuple[str, tuple[str, ...], str | None], list[float]] = {}


def expected(
    backend: Reranker, texts: list[str], *, top_n: int | None = None, instruction: str | None = None
) -> list[tuple[str, float]]:
    """(node id, score) pairs best first, from the backend's own scores (cached per kind of backend)."""
    key = (type(backend).__name__, tuple(texts), instruction)
    if key not in _SCORES:
        _SCORES[key] = backend.score(QUERY, texts, instruction=instruction)
    scores = _SCORES[key]
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    return [(f"node-{i}", scores[i]) for i in order][:top_n]


async def postprocess(
    pp: QwenRerank, nodes: list[NodeWithScore], mode: str, **kwargs: Any
) -> list[NodeWithScore]:
    if mode == "sync":
        return pp.postprocess_nodes(nodes, **kwargs)
    return await pp.apostprocess_nodes(nodes, **kwargs)


def test_tiny_model_tells_the_nodes_apart(backend: Reranker) -> None:
    assert len({round(s, 6) for s in backend.score(QUERY, embed_texts(make_nodes()))}) == len(TEXTS)


async def test_returns_new_scored_nodes_best_first(backend: Reranker, mode: str) -> None:
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    out = await postprocess(QwenRerank(reranker=backend, top_n=None), nodes, mode, query_str=QUERY)

    # Scored on the EMBED view: the title is part of the text, the excluded key is not.
    assert "Doc 1" in embed_texts(nodes)[1] and "rank" not in embed_texts(nodes)[1]
    assert [(n.node.node_id, n.score) for n in out] == expected(backend, embed_texts(nodes))
    by_id = {n.node.node_id: n for n in nodes}
    for new in out:
        original = by_id[new.node.node_id]
        assert new is not original and new.node is not original.node
        assert type(new.score) is float
        added = {"truncated": False, "best_span": None}  # what the model read: all of it
        assert new.node.metadata == {**original.node.metadata, **added}
        assert "retrieval_score" not in new.node.metadata
        assert new.node.metadata["internal"] is not original.node.metadata["internal"]
        assert new.node.get_content() == original.node.get_content()
    assert nodes == before  # the caller's nodes and scores are untouched


async def test_keep_retrieval_score_goes_into_the_new_node_only(tiny_reranker: Reranker, mode: str) -> None:
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    out = await postprocess(
        QwenRerank(reranker=tiny_reranker, top_n=None, keep_retrieval_score=True),
        nodes,
        mode,
        query_str=QUERY,
    )
    retrieval = {n.node.node_id: n.score for n in nodes}
    for new in out:
        assert new.node.metadata["retrieval_score"] == retrieval[new.node.node_id]
        assert new.score != new.node.metadata["retrieval_score"]
    assert nodes == before
    assert all("retrieval_score" not in n.node.metadata for n in nodes)


@pytest.mark.parametrize(("top_n", "count"), [(None, 6), (1, 1), (3, 3), (6, 6), (50, 6)])
def test_top_n_edges(backend: Reranker, top_n: int | None, count: int) -> None:
    out = QwenRerank(reranker=backend, top_n=top_n).postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [n.node.node_id for n in out] == [i for i, _ in expected(backend, embed_texts(make_nodes()))][
        :count
    ]


def test_defaults(tiny_reranker: Reranker) -> None:
    pp = QwenRerank(reranker=tiny_reranker)
    assert pp.top_n == 3 and pp.keep_retrieval_score is False and pp.score_threshold is None
    assert len(pp.postprocess_nodes(make_nodes(), query_str=QUERY)) == 3


def test_score_threshold_and_instruction(backend: Reranker) -> None:
    instruction = "Given a geography question, find the passage naming the city"
    texts = embed_texts(make_nodes())
    scores = [score for _, score in expected(backend, texts, instruction=instruction)]
    pp = QwenRerank(reranker=backend, top_n=None, score_threshold=scores[1], instruction=instruction)
    assert [n.score for n in pp.postprocess_nodes(make_nodes(), query_str=QUERY)] == scores[:2]


async def test_missing_query_and_empty_nodes(tiny_reranker: Reranker, mode: str) -> None:
    pp = QwenRerank(reranker=tiny_reranker)
    with pytest.raises(ValueError, match=r"^Missing query bundle in extra info\.$") as info:
        await postprocess(pp, make_nodes(), mode)
    assert isinstance(info.value, InvalidInputError)
    assert await postprocess(pp, [], mode, query_str=QUERY) == []


def test_empty_nodes_do_not_load_the_model(tmp_path: Any) -> None:
    pp = QwenRerank(model=str(tmp_path / "no-such-model"))
    assert pp.postprocess_nodes([], query_str=QUERY) == []
    assert not pp._backend.built


def model_used(backend: Reranker) -> str:
    """What the events should report for the fixture's backends."""
    if isinstance(backend, VLLMReranker):
        return f"<server default> at {backend.base_urls[0]}"
    return str(getattr(backend, "model_name", ""))


async def test_events_and_callbacks(backend: Reranker, instrumentation: EventCollector, mode: str) -> None:
    debug = LlamaDebugHandler()
    pp = QwenRerank(reranker=backend, top_n=2, callback_manager=CallbackManager([debug]))
    nodes = make_nodes()
    out = await postprocess(pp, nodes, mode, query_bundle=QueryBundle(QUERY))

    mine = [e for e in instrumentation.events if isinstance(e, (ReRankStartEvent, ReRankEndEvent))]
    assert [type(e) for e in mine] == [ReRankStartEvent, ReRankEndEvent]
    start, end = mine
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query == QueryBundle(QUERY) and start.top_n == 2
    assert start.model_name == model_used(backend) and model_used(backend)  # the model really used
    assert start.nodes == nodes and end.nodes == out
    # Both events belong to the postprocessor's own span, on the sync and the async path.
    assert start.span_id is not None and start.span_id == end.span_id
    assert "QwenRerank._" in start.span_id and "postprocess_nodes" in start.span_id

    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    begin, finish = pairs[0]
    assert begin.payload is not None and finish.payload is not None
    assert begin.payload[EventPayload.NODES] == nodes
    assert begin.payload[EventPayload.MODEL_NAME] == model_used(backend)
    assert begin.payload[EventPayload.QUERY_STR] == QUERY
    assert begin.payload[EventPayload.TOP_K] == 2
    assert finish.payload[EventPayload.NODES] == out


async def test_events_name_the_model_built_from_settings(
    tiny_model_path: Any, fake_vllm: Any, instrumentation: EventCollector, mode: str
) -> None:
    local = QwenRerank(model=tiny_model_path, device="cpu")  # a pathlib.Path, as os.PathLike
    named = QwenRerank(base_url=fake_vllm.url, model=fake_vllm.served_model_name)
    for pp, model in ((local, str(tiny_model_path)), (named, fake_vllm.served_model_name)):
        instrumentation.events.clear()
        await postprocess(pp, make_nodes(), mode, query_str=QUERY)
        starts = [e for e in instrumentation.events if isinstance(e, ReRankStartEvent)]
        assert [e.model_name for e in starts] == [model]


def test_start_event_top_n_counts_all_nodes_when_unlimited(
    tiny_reranker: Reranker, instrumentation: EventCollector
) -> None:
    QwenRerank(reranker=tiny_reranker, top_n=None).postprocess_nodes(make_nodes(), query_str=QUERY)
    starts = [e for e in instrumentation.events if isinstance(e, ReRankStartEvent)]
    assert [e.top_n for e in starts] == [len(TEXTS)]


# -- through LlamaIndex's query engines -------------------------------------------------------------


def build_index() -> VectorStoreIndex:
    documents = [
        Document(text=text, id_=f"doc-{i}", metadata={"title": f"Doc {i}"}) for i, text in enumerate(TEXTS)
    ]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))


async def test_query_engine_with_node_postprocessors(backend: Reranker, mode: str) -> None:
    recorder = ThreadRecorder(backend)
    engine = build_index().as_query_engine(
        llm=MockLLM(),
        similarity_top_k=len(TEXTS),
        node_postprocessors=[QwenRerank(reranker=recorder, top_n=3)],
    )
    response = engine.query(QUERY) if mode == "sync" else await engine.aquery(QUERY)

    source = response.source_nodes
    retrieved = engine.retriever.retrieve(QUERY)
    want = [(n.score, t) for n, t in zip(retrieved, embed_texts(retrieved), strict=True)]
    want_ranked = backend.rerank(QUERY, [t for _, t in want], top_n=3)
    assert [(n.node.node_id, n.score) for n in source] == [
        (retrieved[r.index].node.node_id, r.score) for r in want_ranked
    ]
    if mode == "async":
        assert recorder.calls == [("async", threading.get_ident())]  # native async, on the loop's thread
    else:
        assert [kind for kind, _ in recorder.calls] == ["sync"]


async def test_retriever_query_engine(backend: Reranker, mode: str) -> None:
    retriever = build_index().as_retriever(similarity_top_k=len(TEXTS))
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(), node_postprocessors=[QwenRerank(reranker=backend, top_n=2)]
    )
    response = engine.query(QUERY) if mode == "sync" else await engine.aquery(QUERY)
    retrieved = retriever.retrieve(QUERY)
    ranked = backend.rerank(QUERY, embed_texts(retrieved), top_n=2)
    assert [n.node.node_id for n in response.source_nodes] == [
        retrieved[r.index].node.node_id for r in ranked
    ]
    assert [n.score for n in response.source_nodes] == [r.score for r in ranked]


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"top_n": 0}, "top_n must be a positive int or None"),
        ({"top_n": -1}, "top_n must be a positive int or None"),
        ({"top_n": True}, "top_n"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"instruction": 7}, "instruction must be a str"),
        ({"base_url": "http://127.0.0.1:9", "dtype": "float16"}, r"local backend only \(dtype\)"),
        ({"timeout": 5.0}, r"remote vLLM backend only \(timeout\)"),
    ],
)
def test_bad_settings_raise_our_error(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        QwenRerank(**settings)


async def test_bad_nodes_are_named_by_position(tiny_reranker: Reranker, mode: str) -> None:
    pp = QwenRerank(reranker=tiny_reranker)
    nodes = make_nodes()
    nodes[3] = NodeWithScore(node=TextNode.model_construct(id_="bad", text=None))  # skips validation
    with pytest.raises(InvalidInputError, match=r"nodes\[3\] has content of type NoneType"):
        await postprocess(pp, nodes, mode, query_str=QUERY)
    with pytest.raises(InvalidInputError, match=r"nodes\[1\] must be a NodeWithScore, got TextNode"):
        await postprocess(pp, [make_nodes()[0], TextNode(text="x")], mode, query_str=QUERY)  # type: ignore[list-item]


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()


@pytest.mark.parametrize(
    ("node", "media"),
    [
        (ImageNode(image=PNG, metadata={"title": "a chart"}), "image"),
        (ImageNode(image_url="http://127.0.0.1:9/cat.png"), "image_url"),
        (Node(image_resource=MediaResource(data=PNG.encode())), "image_resource"),
    ],
)
def test_nodes_without_text_are_named_by_position(tiny_reranker: Reranker, node: Any, media: str) -> None:
    nodes = [*make_nodes()[:2], NodeWithScore(node=node, score=0.5)]
    with pytest.raises(InvalidInputError, match=rf"nodes\[2\] \(\w+ '[^']+'\) has no text, only {media}"):
        QwenRerank(reranker=tiny_reranker).postprocess_nodes(nodes, query_str=QUERY)


def test_image_node_with_a_caption_is_scored_on_the_caption(tiny_reranker: Reranker) -> None:
    captioned = NodeWithScore(node=ImageNode(id_="img", image=PNG, text="A map of Beijing"), score=0.5)
    out = QwenRerank(reranker=tiny_reranker, top_n=None).postprocess_nodes([captioned], query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in out] == [
        ("img", tiny_reranker.score(QUERY, ["A map of Beijing"])[0])
    ]


# -- serialisation and secrets ----------------------------------------------------------------------


def test_class_name_and_serialisation(monkeypatch: pytest.MonkeyPatch, tiny_reranker: Reranker) -> None:
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "env-secret-123")
    pp = QwenRerank(base_url="http://127.0.0.1:9", api_key="given-secret-456", top_n=4)
    assert QwenRerank.class_name() == "QwenRerank"
    data = pp.to_dict()
    assert data["class_name"] == "QwenRerank" and data["top_n"] == 4 and "api_key" not in data
    for text in (repr(pp), str(pp), pp.to_json(), str(data)):
        assert "given-secret-456" not in text and "env-secret-123" not in text
    restored = QwenRerank.from_json(pp.to_json())
    assert restored.top_n == 4 and restored.base_url == "http://127.0.0.1:9"
    assert restored.api_key is not None and restored.api_key.get_secret_value() == "env-secret-123"
    assert "reranker" not in QwenRerank(reranker=tiny_reranker).to_dict()


async def test_base_url_selects_the_vllm_backend(fake_vllm: Any, mode: str) -> None:
    engine = build_index().as_query_engine(
        llm=MockLLM(),
        similarity_top_k=len(TEXTS),
        node_postprocessors=[QwenRerank(base_url=fake_vllm.url, top_n=None)],
    )
    response = engine.query(QUERY) if mode == "sync" else await engine.aquery(QUERY)
    retrieved = engine.retriever.retrieve(QUERY)
    with VLLMReranker(fake_vllm.url) as direct:
        ranked = direct.rerank(QUERY, embed_texts(retrieved))
    assert [(n.node.node_id, n.score) for n in response.source_nodes] == [
        (retrieved[r.index].node.node_id, r.score) for r in ranked
    ]
    bodies = [r.body for r in fake_vllm.rerank_requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1] and "model" not in bodies[0]
