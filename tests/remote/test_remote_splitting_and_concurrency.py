"""VLLMReranker splits long lists into sub-requests, bounds how many are in flight, sums their usage,
and is shared by threads, tasks and event loops (against the loopback fake server)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tests.helpers import call, close_to
from tests.remote.loopback import DOCS, QUERY, raw_document

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def test_long_lists_are_split_and_merged_by_index(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    docs = [f"document number {i} about pandas" for i in range(10)]
    reranker = make(fake_vllm.url, max_documents_per_request=3)
    fake_vllm.add_fault("shuffle", times=4)
    assert close_to(call(reranker, mode, "score", QUERY, docs), tiny_reranker.score(QUERY, docs))
    bodies = sorted(
        (r.body for r in fake_vllm.rerank_requests), key=lambda b: docs.index(raw_document(b["documents"][0]))
    )
    assert [len(b["documents"]) for b in bodies] == [3, 3, 2, 2]
    assert [raw_document(t) for b in bodies for t in b["documents"]] == docs
    assert len({b["query"] for b in bodies}) == 1


def test_max_concurrency_bounds_sub_requests_in_flight(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url, max_documents_per_request=1, max_concurrency=2)
    fake_vllm.add_fault("delay", seconds=0.15, times=6)
    assert len(call(reranker, mode, "score", QUERY, DOCS[:6])) == 6
    assert fake_vllm.peak_in_flight == 2


def test_many_threads_share_one_reranker_and_its_connections(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    expected = tiny_reranker.score(QUERY, DOCS)
    before = fake_vllm.connections
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(reranker.score(QUERY, DOCS))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 36
    assert all(close_to(r, expected) for r in results)
    assert fake_vllm.connections - before <= 12  # connections are reused, not one per call


def test_many_async_callers_share_one_reranker(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    distinct = [f"query {i} about pandas" for i in range(4)]
    expected = {q: tiny_reranker.score(q, DOCS) for q in distinct}
    queries = distinct * 8

    async def main() -> list[list[float]]:
        try:
            return list(await asyncio.gather(*(reranker.ascore(q, DOCS) for q in queries)))
        finally:
            await reranker.aclose()

    before = fake_vllm.connections
    got = asyncio.run(main())
    assert all(close_to(g, expected[q]) for g, q in zip(got, queries, strict=True))
    assert fake_vllm.connections - before <= len(queries)  # reused, not one per call


def test_async_works_across_event_loops(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    first = asyncio.run(reranker.ascore(QUERY, DOCS))
    second = asyncio.run(reranker.ascore(QUERY, DOCS))  # a new loop: the client must not reuse old sockets
    assert first == second and close_to(first, tiny_reranker.score(QUERY, DOCS))


def test_usage_is_summed_over_sub_requests(fake_vllm, make, mode, api) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url, max_documents_per_request=2)
    assert reranker.last_usage is None

    async def in_one_task() -> Any:
        await reranker.ascore(QUERY, DOCS)
        return reranker.last_usage

    usage = (
        reranker.score(QUERY, DOCS) and reranker.last_usage if mode == "sync" else asyncio.run(in_one_task())
    )
    per_request = [r.body for r in fake_vllm.rerank_requests]
    assert len(per_request) == 3 and usage is not None
    assert usage.prompt_tokens == usage.total_tokens and usage.prompt_tokens > 0
    one = make(fake_vllm.url)
    one.score(QUERY, DOCS)
    assert one.last_usage == usage  # the same prompts, in one request: the same tokens
