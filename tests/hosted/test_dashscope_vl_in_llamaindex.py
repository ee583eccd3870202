"""LlamaIndex's QwenRerank reranks ImageNodes with TextNodes through DashScope's qwen3-vl-rerank, unchanged.

The node postprocessor runs for real against the loopback fake of DashScope: each node's score is
the one the hosted reranker gives the same image or text directly, and the images travel as the
element form's data URLs and URLs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from qwen_rerank import RemoteReranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-vl-llamaindex"
QUERY = "a red square"
URL = "https://img.example/red-square.jpg"


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 20), color).save(buffer, "PNG")
    return buffer.getvalue()


RED, BLUE = _png((230, 20, 20)), _png((20, 20, 230))


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key=KEY) as running:
        yield running


@pytest.fixture
def reranker(server: FakeHostedServer) -> Iterator[RemoteReranker]:
    server.reset()
    with RemoteReranker(server.url, api="dashscope", model="qwen3-vl-rerank", api_key=KEY) as built:
        yield built


def test_image_and_text_nodes_are_scored_by_the_hosted_vl_model(
    reranker: RemoteReranker, server: FakeHostedServer, tmp_path: Path
) -> None:
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode

    from llamaindex_qwen_rerank import QwenRerank

    blue = tmp_path / "blue.png"
    blue.write_bytes(BLUE)
    nodes = [
        NodeWithScore(node=TextNode(id_="text", text="A red square on white paper."), score=0.9),
        NodeWithScore(node=ImageNode(id_="b64", image=base64.b64encode(RED).decode()), score=0.8),
        NodeWithScore(node=ImageNode(id_="path", image_path=str(blue), text="blue"), score=0.7),
        NodeWithScore(node=ImageNode(id_="url", image_url=URL), score=0.6),
    ]
    out = QwenRerank(reranker=reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    (sent,) = [request.body["input"]["documents"] for request in server.requests]
    assert sent[0] == {"text": "A red square on white paper."}
    assert sent[1]["image"] == "data:image/png;base64," + base64.b64encode(RED).decode()
    assert sent[2] == {"image": "data:image/png;base64," + base64.b64encode(BLUE).decode(), "text": "blue"}
    assert sent[3] == {"image": URL}
    expected = reranker.score(
        QUERY,
        [
            "A red square on white paper.",
            {"image": RED},
            {"image": str(blue), "text": "blue"},
            {"image": URL},
        ],
    )
    got = {n.node.node_id: n.score for n in out}
    assert got == dict(zip(["text", "b64", "path", "url"], expected, strict=True))
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)
    assert nodes[1].score == 0.8 and "relevance_score" not in nodes[1].node.metadata  # not mutated
