"""RemoteReranker(multimodal=True), and VLLMReranker its subclass, send images and video as content parts.

The shape is vLLM's ``ScoreMultiModalParam`` (``vllm/entrypoints/pooling/scoring/typing.py``):
a str, or ``{"content": [{"type": "text" | "image_url" | "video_url", ...}]}``. The fake vLLM server
checks that shape as vLLM does and records each body, so these tests read what went over the wire.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from qwen_rerank import InvalidInputError, QwenRerankWarning, RemoteReranker, VLLMReranker
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION, MediaLimits
from qwen_rerank.testing import FakeVLLMServer


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, "PNG")
    return buffer.getvalue()


RED = _png((220, 0, 0))
URL = "https://images.example/cat.png?sig=abc"
VIDEO = "https://videos.example/clip.mp4"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVLLMServer]:
    with FakeVLLMServer(served_model_name="Qwen/Qwen3-VL-Reranker-2B", template=True) as running:
        yield running


@pytest.fixture
def reranker(server: FakeVLLMServer) -> Iterator[RemoteReranker]:
    server.reset()
    with RemoteReranker(server.url, multimodal=True, max_retries=0) as built:
        yield built


def _bodies(server: FakeVLLMServer) -> list[dict[str, Any]]:
    return [request.body for request in server.rerank_requests]


def _decoded(part: dict[str, Any]) -> bytes:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def test_documents_go_as_content_parts_in_the_official_order(
    reranker: RemoteReranker, server: FakeVLLMServer, tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(RED)
    documents: list[Any] = [
        "plain text",
        {"image": RED},
        {"text": "a cat", "image": URL},
        {"video": VIDEO, "image": str(path), "text": ["one", "two"]},
    ]
    reranker.rerank("a red thing", documents)
    (body,) = _bodies(server)
    assert body["query"] == "a red thing"
    sent = body["documents"]
    assert sent[0] == "plain text"
    (image,) = sent[1]["content"]
    assert image["type"] == "image_url" and _decoded(image) == RED
    assert sent[2]["content"] == [
        {"type": "image_url", "image_url": {"url": URL}},
        {"type": "text", "text": "a cat"},
    ]
    video, file_image, one, two = sent[3]["content"]
    assert video == {"type": "video_url", "video_url": {"url": VIDEO}}
    assert _decoded(file_image) == RED
    assert (one["text"], two["text"]) == ("one", "two")


def test_a_multimodal_query_and_async_calls_send_the_same(
    reranker: RemoteReranker, server: FakeVLLMServer
) -> None:
    query = {"image": RED, "text": "like this"}
    scores = reranker.score(query, ["red", {"image": URL}])
    assert asyncio.run(reranker.ascore(query, ["red", {"image": URL}])) == scores
    first, second = _bodies(server)
    assert first == second
    image, text = first["query"]["content"]
    assert _decoded(image) == RED and text == {"type": "text", "text": "like this"}


def test_scores_map_back_by_index(reranker: RemoteReranker) -> None:
    documents: list[Any] = ["alpha", {"image": URL}, "beta", {"image": RED}, {"image": URL}]
    scores = reranker.score("q", documents)
    results = reranker.rerank("q", documents)
    assert sorted(r.index for r in results) == list(range(5))
    assert all(r.score == scores[r.index] for r in results)
    assert scores[1] == scores[4]


def test_the_instruction_goes_to_the_server_template(
    reranker: RemoteReranker, server: FakeVLLMServer
) -> None:
    reranker.score("q", [{"image": URL}], instruction="Find the matching photo.")
    reranker.score("q", [{"image": URL}])
    given, default = _bodies(server)
    assert given["instruction"] == "Find the matching photo."
    assert default["instruction"] == DEFAULT_VL_INSTRUCTION == reranker.instruction


def test_what_a_server_cannot_take_is_refused_before_sending(
    reranker: RemoteReranker, server: FakeVLLMServer, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=r"documents\[1\]'s video\[0\].*by http\(s\) URL only"):
        reranker.score("q", ["x", {"video": [str(tmp_path / "f0.png"), str(tmp_path / "f1.png")]}])
    with pytest.raises(InvalidInputError, match=r"documents\[0\]'s video\[0\] is a video file"):
        reranker.score("q", [{"video": str(tmp_path / "clip.mp4")}])
    assert _bodies(server) == []


def test_an_image_over_the_byte_limit_is_not_sent(server: FakeVLLMServer) -> None:
    server.reset()
    limits = MediaLimits(max_bytes=len(RED) - 1)
    with (
        RemoteReranker(server.url, multimodal=True, media_limits=limits) as small,
        pytest.raises(InvalidInputError, match=r"documents\[0\]'s image\[0\]") as caught,
    ):
        small.score("q", [{"image": RED}])
    assert "base64" not in str(caught.value)
    assert _bodies(server) == []


def test_multimodal_needs_vllm_and_its_template(server: FakeVLLMServer) -> None:
    with pytest.raises(InvalidInputError, match="api='vllm' and template='server'"):
        RemoteReranker(server.url, multimodal=True, template="client")
    with pytest.raises(InvalidInputError, match="api='vllm' and template='server'"):
        RemoteReranker(server.url, multimodal=True, api="sglang")
    with pytest.raises(
        InvalidInputError, match="model='qwen3-rerank' reads text only: pass model='qwen3-vl-rerank'"
    ):
        RemoteReranker(api="dashscope", api_key="sk-test", multimodal=True)


def test_the_old_name_takes_multimodal_and_warns_of_no_text_template(
    server: FakeVLLMServer, recwarn: pytest.WarningsRecorder
) -> None:
    server.reset()
    with VLLMReranker(server.url, multimodal=True) as old:
        assert old.multimodal and old.instruction == DEFAULT_VL_INSTRUCTION
        old.score("q", [{"image": RED}])
    assert not [w for w in recwarn if issubclass(w.category, QwenRerankWarning)]
    assert _bodies(server)[0]["documents"][0]["content"][0]["type"] == "image_url"


def test_a_text_reranker_refuses_an_image_and_sends_nothing(server: FakeVLLMServer) -> None:
    server.reset()
    with RemoteReranker(server.url) as text_only:
        assert not text_only.multimodal
        with pytest.raises(InvalidInputError, match=r"documents\[1\].*text only"):
            text_only.score("q", ["x", {"image": URL}])
    assert _bodies(server) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"content": []},
        {"content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]},
        {"content": [{"type": "audio_url", "audio_url": {"url": URL}}]},
        {"contents": [{"type": "text", "text": "x"}]},
    ],
)
def test_the_fake_server_refuses_what_vllm_refuses(server: FakeVLLMServer, bad: dict[str, Any]) -> None:
    reply = httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["ok", bad]}, timeout=10)
    assert reply.status_code == 400


def test_an_empty_query_is_refused_before_anything_is_sent(
    reranker: RemoteReranker, server: FakeVLLMServer
) -> None:
    with pytest.raises(InvalidInputError, match="query is empty"):
        reranker.score("  ", [{"image": URL}])
    with pytest.raises(InvalidInputError, match=r"pairs\[0\]: query is empty"):
        reranker.score_pairs([("", {"image": URL})])
    assert _bodies(server) == []
