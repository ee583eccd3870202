"""LocalReranker shared by threads and async callers: each gets the scores a serial call gets, and
the event loop is never blocked."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import LocalReranker
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
)


@pytest.mark.parametrize("cache_size", [0, 50])
def test_threads_and_async_callers_get_serial_scores(
    make: Any, tiny_model_path: Path, cache_size: int
) -> None:
    serial = make(max_batch_tokens=300)
    reranker = (
        LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=300, cache_size=cache_size)
        if cache_size
        else serial
    )
    queries = [QUERY, "what?", "中国的首都是哪里？", "panda"]
    jobs = [(q, DOCUMENTS[k:] + DOCUMENTS[:k]) for k in range(3) for q in queries]
    expected = [serial.score(q, docs) for q, docs in jobs]

    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            for j in range(offset, len(jobs), 8):
                results[j] = reranker.score(*jobs[j])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def async_callers() -> list[list[float]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        out = await asyncio.gather(*(reranker.ascore(q, docs) for q, docs in jobs))
        task.cancel()
        assert ticks > 3, "the event loop was blocked"
        return list(out)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    async_results = asyncio.run(async_callers())
    for thread in threads:
        thread.join()
    assert not errors
    concurrent = [results[j] for j in range(len(jobs))] + async_results
    if cache_size == 0:
        # Same batches, same kernels: bit-for-bit the serial scores.
        assert concurrent == expected * 2
    else:
        # Cached scores may come from a call that batched the document with others.
        assert (
            max_diff([s for row in concurrent for s in row], [s for row in expected * 2 for s in row]) < 1e-6
        )
