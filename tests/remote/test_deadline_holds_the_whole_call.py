"""``deadline`` bounds the whole call, for every call: one query or many, sync or async."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from qwen_rerank import RemoteTimeoutError, VLLMReranker
from qwen_rerank.testing.fake_vllm import FakeVLLMServer

REQUESTS = [(f"query {i}", ["a document", "another one"]) for i in range(4)]


async def call(reranker: VLLMReranker, method: str, mode: str, requests: Any) -> Any:
    if mode == "sync":
        return getattr(reranker, method)(requests)
    return await getattr(reranker, f"a{method}")(requests)


@pytest.mark.parametrize("method", ["score_many", "rerank_many"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_many_queries_call_ends_by_its_deadline(fake_vllm: Any, method: str, mode: str) -> None:
    # Four requests one after the other, each 0.8 s: 3.2 s in all, past the 1.5 s deadline.
    fake_vllm.add_fault("delay", seconds=0.8, times=len(REQUESTS))
    reranker = VLLMReranker(fake_vllm.url, max_concurrency=1, deadline=1.5, timeout=5, max_retries=0)
    started = time.monotonic()
    with reranker, pytest.raises(RemoteTimeoutError):
        await call(reranker, method, mode, REQUESTS)
    assert time.monotonic() - started < 2.5
    # The requests the deadline cut short finish on the server before the next test.
    while fake_vllm.in_flight:
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_pairs_call_ends_by_its_deadline(fake_vllm: Any, mode: str) -> None:
    pairs = [(query, documents[0]) for query, documents in REQUESTS]
    fake_vllm.add_fault("delay", seconds=0.8, times=len(pairs))
    reranker = VLLMReranker(fake_vllm.url, max_concurrency=1, deadline=1.5, timeout=5, max_retries=0)
    started = time.monotonic()
    with reranker, pytest.raises(RemoteTimeoutError):
        await (reranker.ascore_pairs(pairs) if mode == "async" else _sync(reranker.score_pairs, pairs))
    assert time.monotonic() - started < 2.5
    while fake_vllm.in_flight:
        time.sleep(0.05)


async def _sync(function: Any, *args: Any) -> Any:
    return function(*args)


@pytest.fixture(scope="module")
def instant_server() -> Iterator[FakeVLLMServer]:
    """A fake server that scores at once (no model): only the planted delays take time."""
    with FakeVLLMServer(None) as server:
        yield server


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_auto_deadline_grows_with_the_rounds_of_sub_requests(
    instant_server: FakeVLLMServer, mode: str
) -> None:
    # Each sub-request may take 1.5 s (no retries): "auto" is 1.5 s per round of max_concurrency
    # sub-requests, so six rounds of 0.5 s each fit, though together they outlast one round.
    requests = [(f"query {i}", ["a document"]) for i in range(6)]
    instant_server.reset()
    instant_server.add_fault("delay", seconds=0.5, times=len(requests))
    with VLLMReranker(instant_server.url, max_concurrency=1, timeout=1.5, max_retries=0) as reranker:
        scores = await call(reranker, "score_many", mode, requests)
    assert len(scores) == len(requests)
