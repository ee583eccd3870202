"""The fake qwen3-vl-rerank answers as DashScope's API reference describes: element objects, limits, 400s.

Bodies are posted raw with httpx, so these tests check the fake apart from the client.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-fake-vl"
PATH = "/api/v1/services/rerank/text-rerank/text-rerank"
PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key=KEY) as running:
        yield running


def _post(
    server: FakeHostedServer, documents: list[Any], query: Any = "q", **parameters: Any
) -> httpx.Response:
    body = {
        "model": "qwen3-vl-rerank",
        "input": {"query": query, "documents": documents},
        "parameters": parameters,
    }
    return httpx.post(server.url + PATH, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _scores(response: httpx.Response) -> dict[int, float]:
    assert response.status_code == 200, response.text
    return {r["index"]: r["relevance_score"] for r in response.json()["output"]["results"]}


def test_the_references_example_is_answered_sorted_by_score(server: FakeHostedServer) -> None:
    documents = [
        {"text": "a text"},
        {"image": "https://img.example/a.jpg"},
        {"video": "https://v.example/a.mp4"},
    ]
    response = _post(server, documents, top_n=2, return_documents=True, fps=1.0)
    results = response.json()["output"]["results"]
    assert [r["relevance_score"] for r in results] == sorted(
        (r["relevance_score"] for r in results), reverse=True
    )
    assert len(results) == 2 and all(r["document"] == documents[r["index"]] for r in results)
    assert response.json()["usage"]["total_tokens"] > 0


def test_scores_follow_the_content_not_the_position(server: FakeHostedServer) -> None:
    a, b = {"image": "https://img.example/a.jpg"}, {"image": PNG_URL, "text": "caption"}
    forward, backward = _scores(_post(server, [a, b])), _scores(_post(server, [b, a]))
    assert forward[0] == backward[1] and forward[1] == backward[0] and forward[0] != forward[1]
    assert _scores(_post(server, [a], instruct="Other task."))[0] != forward[0]


@pytest.mark.parametrize(
    "document",
    [
        "a bare string",
        {},
        {"images": "https://img.example/a.jpg"},
        {"image": "file:///etc/passwd"},
        {"image": "/home/me/a.png"},
        {"image": "data:image/gif;base64,R0lGODlhAQABAAAAACw="},
        {"image": "data:image/png;base64,not base64!"},
        {"video": "data:video/mp4;base64,AAAA"},
        {"video": "clip.mp4"},
        {"text": 7},
        {"image": ""},
    ],
)
def test_an_element_the_reference_does_not_describe_is_a_400(server: FakeHostedServer, document: Any) -> None:
    response = _post(server, [{"text": "fine"}, document])
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter" and response.json()["request_id"]


@pytest.mark.parametrize(
    ("count", "element"),
    [
        (101, {"text": "t"}),
        (41, {"image": "https://img.example/a.jpg"}),
        (5, {"video": "https://v.example/a.mp4"}),
    ],
)
def test_a_request_over_a_per_type_document_limit_is_a_400(
    server: FakeHostedServer, count: int, element: dict[str, str]
) -> None:
    assert _post(server, [element] * (count - 1)).status_code == 200
    response = _post(server, [element] * count)
    assert response.status_code == 400
    assert f"should not be larger than {count - 1}" in response.json()["message"]


def test_a_text_over_8000_tokens_is_cut_and_recorded(server: FakeHostedServer) -> None:
    server.reset()
    assert _post(server, [{"text": "word " * 9000, "image": "https://img.example/a.jpg"}]).status_code == 200
    (cut,) = server.truncations
    assert (cut.what, cut.kept) == ("document 0", 8000)


def test_an_image_query_is_an_object_and_a_bad_fps_is_refused(server: FakeHostedServer) -> None:
    assert _post(server, [{"text": "t"}], query={"image": PNG_URL}).status_code == 200
    assert _post(server, [{"text": "t"}], query={"image": "ftp://x/a.png"}).status_code == 400
    assert _post(server, [{"text": "t"}], fps=0).status_code == 400
