"""What a server sends costs bounded memory and time, and async calls never block the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from qwen_rerank import APIStatusError, MalformedResponseError, VLLMReranker, _pipeline
from qwen_rerank.remote._bodies import RequestBuilder
from qwen_rerank.remote._replies import MAX_SERVER_TEXT, parse_scores
from qwen_rerank.testing.fake_vllm import FakeVLLMServer
from tests.helpers import call

QUERY = "what is a giant panda?"
DOCS = ["The giant panda is a bear.", "Paris is the capital of France."]
KEY = "sk-live-7Hq2ZpX9wLmN4vR8tY6uK3bJ5cD1fG0e"


@pytest.fixture(scope="module")
def instant() -> Iterator[FakeVLLMServer]:
    with FakeVLLMServer(None) as server:
        yield server


@pytest.fixture
def server(instant: FakeVLLMServer) -> Iterator[FakeVLLMServer]:
    instant.reset()
    yield instant


def test_a_huge_server_message_is_cut_and_redacted_within_the_deadline(server, mode) -> None:  # type: ignore[no-untyped-def]
    message = "model overloaded; you sent " + KEY + " " + "x" * (30 << 20)
    server.add_fault("status", status=400, message=message)
    with VLLMReranker(server.url, api_key=KEY, deadline=5, max_response_bytes=64 << 20) as reranker:
        started = time.monotonic()
        with pytest.raises(APIStatusError) as info:
            call(reranker, mode, "score", QUERY, DOCS)
        elapsed = time.monotonic() - started
    assert elapsed < 5 + 1.5
    assert len(info.value.server_message or "") <= MAX_SERVER_TEXT + 10
    assert len(str(info.value)) < 2 * MAX_SERVER_TEXT + 500
    assert KEY[:8] not in str(info.value) and "model overloaded" in str(info.value)


def test_a_web_page_is_summarised_as_status_type_and_first_line(server, mode) -> None:  # type: ignore[no-untyped-def]
    page = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n" + "<p>x</p>\n" * 200
    server.add_fault("status", status=404, shape="text", message=page)
    with VLLMReranker(server.url) as reranker, pytest.raises(APIStatusError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    text = str(info.value)
    assert "HTTP 404" in text and "text/plain" in text and "<!DOCTYPE html>" in text
    assert "not a rerank server" in text and "<p>x</p>" not in text and len(text) < 800


def test_a_200_page_is_summarised_too(server, mode) -> None:  # type: ignore[no-untyped-def]
    server.add_fault("garbage")
    with VLLMReranker(server.url) as reranker, pytest.raises(MalformedResponseError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert "first line" in str(info.value) and "not a rerank server" in str(info.value)


def padded_reply(documents: int, size: int) -> bytes:
    results = [{"index": i, "relevance_score": 0.5} for i in range(documents)]
    head = json.dumps({"results": results, "usage": {"prompt_tokens": 9}}).encode()[:-1]
    return head + b', "pad": [' + b"[]," * (size // 3) + b"[]]}"


def test_a_reply_padded_with_structure_is_refused_before_it_is_parsed() -> None:
    reply = padded_reply(128, 4 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedResponseError, match="far more than any rerank reply"):
            parse_scores(reply, 128, "http://h")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(reply)  # parsed, it took ~90 MB: 22x its bytes


def test_a_padded_reply_is_refused_over_http(server, mode) -> None:  # type: ignore[no-untyped-def]
    server.add_fault("json", body=json.loads(padded_reply(2, 1 << 20)))
    reranker = VLLMReranker(server.url, max_response_bytes=8 << 20)
    with reranker, pytest.raises(MalformedResponseError, match="far more than any rerank reply"):
        call(reranker, mode, "score", QUERY, DOCS)


def test_legitimate_replies_with_echoed_documents_and_meta_pass() -> None:
    docs = ["{[(,:)]}" * 50, 'a "quoted" \\ text, with: commas']
    results = [
        {"index": i, "relevance_score": 0.5, "document": {"text": d}, "meta": {"a": [1, 2], "b": {"c": None}}}
        for i, d in enumerate(docs)
    ]
    body = json.dumps({"id": "x", "results": results, "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    assert parse_scores(body.encode(), 2, "http://h").scores == [0.5, 0.5]


def test_ascore_many_builds_bodies_and_checks_requests_off_the_event_loop(  # type: ignore[no-untyped-def]
    server, tiny_model_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokenizing, encoding and checking 10,000 pairs happen on a worker thread, never on the loop's.

    A spy records the thread of each step; a wall-clock ticker would measure the machine's
    load as much as the loop (docs/security.md has the ticker's numbers).
    """
    threads: dict[str, set[int]] = {"bodies": set(), "checks": set()}
    build, prepare = RequestBuilder.sub_requests, _pipeline.prepare_many

    def spy_build(self: Any, *args: Any) -> Any:
        threads["bodies"].add(threading.get_ident())
        return build(self, *args)

    def spy_prepare(self: Any, *args: Any) -> Any:
        threads["checks"].add(threading.get_ident())
        return prepare(self, *args)

    monkeypatch.setattr(RequestBuilder, "sub_requests", spy_build)
    monkeypatch.setattr(_pipeline, "prepare_many", spy_prepare)
    text = "The giant panda eats bamboo, and sleeps in the mountains of central China. " * 6
    requests = [(f"query {q} on pandas", [f"{q}-{d} {text}" for d in range(100)]) for q in range(100)]

    async def main() -> list[list[float]]:
        async with VLLMReranker(server.url, tokenizer=str(tiny_model_path), max_length=64) as reranker:
            return await reranker.ascore_many(requests)

    scores = asyncio.run(main())
    assert len(scores) == 100 and all(len(s) == 100 for s in scores)
    assert threads["bodies"] and threads["checks"]
    assert threading.get_ident() not in threads["bodies"] | threads["checks"]
