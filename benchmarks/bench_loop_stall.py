"""The longest event-loop stall while `ascore_many` works, measured with a 5 ms ticker task.

The remote backend checks requests, builds bodies (tokenizing with `tokenizer=`) and finishes
results in worker threads, so the loop only sends, awaits and merges. This prints the longest
gap between the ticker's wake-ups during one `ascore_many` of QUERIES x DOCUMENTS pairs against
the fake server in instant mode (no model), run in a process of its own so that its threads do
not hold this process's GIL, with the load average, since on a busy machine the gaps measure
the machine rather than the loop.

    python benchmarks/bench_loop_stall.py [--queries 300] [--documents 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from qwen_rerank import VLLMReranker
from qwen_rerank.testing import make_tiny_reranker

TEXT = "The giant panda eats bamboo, and sleeps in the mountains of central China. " * 6


async def _measure(url: str, tokenizer: str, requests: list[tuple[str, list[str]]]) -> tuple[float, float]:
    """(longest gap between ticks in ms, seconds for the whole call)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append((now - last) * 1000 - 5)
            last = now

    async with VLLMReranker(url, tokenizer=tokenizer, max_length=128, timeout=600) as reranker:
        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        await reranker.ascore_many(requests)
        elapsed = time.perf_counter() - started
        stop.set()
        await tick
    return max(gaps), elapsed


@contextlib.contextmanager
def _fake_server() -> Iterator[str]:
    """The fake server in instant mode, in its own process; yields its URL."""
    command = [sys.executable, "-m", "qwen_rerank.testing.fake_vllm", "--instant"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            yield process.stdout.readline().strip()
        finally:
            process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tokenizer = str(make_tiny_reranker())
    requests = [
        (f"query {q} on pandas", [f"{q}-{d} {TEXT}" for d in range(args.documents)])
        for q in range(args.queries)
    ]
    print(f"{args.queries} x {args.documents} pairs, tokenizer= the tiny model, fake server in instant mode")
    with _fake_server() as url:
        for run in range(1, args.repeats + 1):
            load = os.getloadavg()[0]
            stall, elapsed = asyncio.run(_measure(url, tokenizer, requests))
            print(f"run {run}: longest stall {stall:.1f} ms over {elapsed:.1f} s (load average {load:.2f})")


if __name__ == "__main__":
    main()
