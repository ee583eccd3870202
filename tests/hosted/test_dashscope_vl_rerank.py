"""RemoteReranker(api="dashscope", model="qwen3-vl-rerank") sends images and video as DashScope's elements.

Real HTTP against the loopback fake of DashScope, which checks each element object as the API
reference describes it (an image by URL or base64 data URL of a listed format, a video by URL
only), refuses a request over a documented limit with DashScope's 400, and scores from the
content, so that a document's score tells it apart from the others.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image

from qwen_rerank import APIStatusError, InvalidInputError, RemoteReranker
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION
from qwen_rerank.prompt import escape_control_tokens
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-vl-secret-8086"
PATH = "/api/v1/services/rerank/text-rerank/text-rerank"
# The reference's "Text query" example.
QUERY = "What is a text reranking model?"
TEXT = "Text reranking models are widely used in search engines and recommender systems."
IMAGE_URL = "https://img.example/tps-1970-356.jpg"
VIDEO_URL = "https://video.example/new+video.mp4"


def _image(color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, fmt)
    return buffer.getvalue()


RED, BLUE_JPEG = _image((220, 0, 0)), _image((0, 0, 220), "JPEG")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key=KEY) as running:
        yield running


@pytest.fixture
def reranker(server: FakeHostedServer) -> Iterator[RemoteReranker]:
    server.reset()
    with RemoteReranker(
        server.url, api="dashscope", model="qwen3-vl-rerank", api_key=KEY, retry_backoff=0.01
    ) as built:
        yield built


def score(reranker: RemoteReranker, mode: str, *args: Any, **kwargs: Any) -> list[float]:
    if mode == "async":
        return asyncio.run(reranker.ascore(*args, **kwargs))
    return reranker.score(*args, **kwargs)


def _sent(server: FakeHostedServer, number: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = server.requests[number].body
    return body


def _data(url: str, kind: str) -> bytes:
    head, payload = url.split(",", 1)
    assert head == f"data:image/{kind};base64"
    return base64.b64decode(payload)


def test_the_body_is_the_references_example(
    reranker: RemoteReranker, server: FakeHostedServer, mode: str
) -> None:
    scores = score(reranker, mode, QUERY, [TEXT, {"image": IMAGE_URL}, {"video": VIDEO_URL}])
    (request,) = server.requests
    assert request.path == PATH and request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "qwen3-vl-rerank",
        "input": {"query": QUERY, "documents": [{"text": TEXT}, {"image": IMAGE_URL}, {"video": VIDEO_URL}]},
        "parameters": {"top_n": 3, "return_documents": False, "fps": 1.0, "instruct": DEFAULT_VL_INSTRUCTION},
    }
    assert len(set(scores)) == 3 and all(0 <= s <= 1 for s in scores)


def test_an_image_query_goes_as_an_object_and_a_text_one_as_a_string(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    reranker.score({"image": IMAGE_URL, "text": "like this"}, ["a", {"text": ["b", "c"]}])
    reranker.score({"text": "only words"}, ["a"])
    image_query, text_query = _sent(server, 0), _sent(server, 1)
    assert image_query["input"]["query"] == {"image": IMAGE_URL, "text": "like this"}
    assert image_query["input"]["documents"] == [{"text": "a"}, {"text": "bc"}]
    assert "fps" not in image_query["parameters"]
    assert text_query["input"]["query"] == "only words"


def test_local_images_become_data_urls_and_urls_go_as_they_are(
    reranker: RemoteReranker, server: FakeHostedServer, tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(RED)
    documents: list[Any] = [
        {"image": str(path), "text": "a red card"},
        {"image": BLUE_JPEG},
        {"image": Image.open(io.BytesIO(RED))},
        {"image": "data:image/png;base64," + base64.b64encode(RED).decode()},
        {"image": IMAGE_URL},
    ]
    score(reranker, mode, "a red thing", documents)
    sent = _sent(server)["input"]["documents"]
    assert _data(sent[0]["image"], "png") == RED and sent[0]["text"] == "a red card"
    assert _data(sent[1]["image"], "jpeg") == BLUE_JPEG
    assert (
        Image.open(io.BytesIO(_data(sent[2]["image"], "png"))).tobytes()
        == Image.open(io.BytesIO(RED)).tobytes()
    )
    assert _data(sent[3]["image"], "png") == RED
    assert sent[4] == {"image": IMAGE_URL}


class _Counting(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(RED)))
        self.end_headers()
        self.wfile.write(RED)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_image_url_is_never_fetched_by_the_client(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cat.png"
        reranker.score("q", [{"image": url}, {"video": url.replace(".png", ".mp4")}])
        asyncio.run(reranker.ascore({"image": url}, ["text"]))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _Counting.hits == []
    assert _sent(server, 0)["input"]["documents"][0] == {"image": url}
    assert _sent(server, 1)["input"]["query"] == {"image": url}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"video": "clip.mp4"}, r"documents\[1\]'s video is a video file; .*by http\(s\) URL only"),
        ({"video": ["f0.png", "f1.png"]}, r"documents\[1\]'s video is a video given as frames"),
        ({"image": [IMAGE_URL, IMAGE_URL]}, r"documents\[1\] holds 2 images; .*one image at most"),
        ({"video": [VIDEO_URL, VIDEO_URL]}, r"documents\[1\] holds 2 videos"),
        ({"image": _image((1, 2, 3), "GIF")}, r"documents\[1\]'s image is not a PNG, JPEG, WEBP, BMP, TIFF"),
    ],
)
def test_what_the_element_form_cannot_carry_is_refused_before_sending(
    reranker: RemoteReranker, server: FakeHostedServer, mode: str, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        score(reranker, mode, "q", ["fine", document])
    assert server.requests == []
    assert "f0.png" not in str(info.value) and "clip" not in str(info.value)


def test_a_gif_file_is_refused_by_index_never_by_path(
    reranker: RemoteReranker, server: FakeHostedServer, tmp_path: Path
) -> None:
    path = tmp_path / "private-album" / "anim.gif"
    path.parent.mkdir()
    path.write_bytes(_image((9, 9, 9), "GIF"))
    with pytest.raises(InvalidInputError, match=r"documents\[2\]'s image") as info:
        reranker.score("q", ["a", "b", {"image": str(path)}])
    assert "private-album" not in str(info.value) and server.requests == []


def test_45_images_are_split_to_40_a_request_and_scores_map_back_by_index(
    reranker: RemoteReranker, server: FakeHostedServer, mode: str
) -> None:
    documents: list[Any] = [{"image": f"https://img.example/{k}.png"} for k in range(45)]
    documents[7:7] = ["a text among the images", {"text": "another", "image": RED}]
    alone = [reranker.score("q", [doc])[0] for doc in documents]
    server.reset()
    server.add_fault("shuffle", times=5)
    got = score(reranker, mode, "q", documents)
    assert got == alone
    per_request = [_sent(server, n)["input"]["documents"] for n in range(len(server.requests))]
    assert len(per_request) == 2 and sum(map(len, per_request)) == 47
    assert all(sum("image" in doc for doc in sent) <= 40 for sent in per_request)


def test_videos_go_4_a_request_and_fps_only_with_a_video(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    documents: list[Any] = [{"video": f"https://video.example/{k}.mp4"} for k in range(6)] + ["text"] * 3
    reranker.score("q", documents)
    sent = [_sent(server, n) for n in range(len(server.requests))]
    assert all(sum("video" in doc for doc in body["input"]["documents"]) <= 4 for body in sent)
    assert [("fps" in body["parameters"]) for body in sent] == [
        any("video" in doc for doc in body["input"]["documents"]) for body in sent
    ]


def test_text_only_calls_keep_the_element_form_and_the_100_document_limit(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    documents = [f"passage {k} <|im_end|>" for k in range(150)]
    scores = reranker.score("find <|im_start|>", documents)
    assert len(scores) == 150 and len(server.requests) == 2
    first = _sent(server)
    assert first["input"]["query"] == escape_control_tokens("find <|im_start|>")
    assert first["input"]["documents"][0] == {"text": escape_control_tokens("passage 0 <|im_end|>")}
    assert max(len(_sent(server, n)["input"]["documents"]) for n in range(2)) <= 100


def test_the_instruction_is_always_sent_the_vl_default_unless_given(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    assert reranker.instruction == DEFAULT_VL_INSTRUCTION and reranker.multimodal
    default = reranker.score("q", [{"image": IMAGE_URL}])
    mine = reranker.score("q", [{"image": IMAGE_URL}], instruction="Find the matching photo.")
    assert _sent(server, 0)["parameters"]["instruct"] == DEFAULT_VL_INSTRUCTION
    assert _sent(server, 1)["parameters"]["instruct"] == "Find the matching photo."
    assert default != mine


def test_a_providers_400_is_surfaced_with_its_message(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    server.add_fault(
        "status", status=400, code="InvalidParameter", message="Range of input length should be [1, 120000]"
    )
    with pytest.raises(APIStatusError, match="InvalidParameter: Range of input length") as info:
        reranker.score("q", [{"image": IMAGE_URL}])
    assert info.value.status_code == 400


def test_the_request_limits_are_the_models(reranker: RemoteReranker) -> None:
    limits = reranker.request_limits
    assert limits is not None
    assert (limits.max_documents, limits.max_image_documents, limits.max_video_documents) == (100, 40, 4)
    assert (limits.max_tokens, limits.max_tokens_per_item) == (120000, 8000)


def test_an_empty_document_and_a_media_only_item_are_sent_as_the_model_reads_them(
    reranker: RemoteReranker, server: FakeHostedServer
) -> None:
    reranker.score("q", ["", {"image": IMAGE_URL}, {"text": []}])
    assert _sent(server)["input"]["documents"] == [{"text": ""}, {"image": IMAGE_URL}, {"text": "NULL"}]
