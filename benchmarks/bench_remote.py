"""VLLMReranker's own cost, against plain httpx, on a loopback server that answers at once.

    .venv/bin/python benchmarks/bench_remote.py            # about a minute
    .venv/bin/python benchmarks/bench_remote.py --quick    # a smoke run

The server is qwen_rerank/testing/fake_vllm.py in ``--instant`` mode (vLLM's response shape,
no model), run in its own process so that it does not share the client's GIL.
It counts the TCP connections it accepts.

1. Per call, 100 documents of ~600 characters: ``VLLMReranker.rerank`` against a
   bare ``httpx.Client.post`` of the very same JSON body on a reused client
   (plus ``response.json()``, which any caller needs). Goal: at most 1.2x.
2. Calls per second, 20 documents a call, from 32 concurrent asyncio callers
   sharing one VLLMReranker (``arerank``), and from 8 threads sharing one
   (``rerank``), against the same callers posting the same JSON through one
   plain reused ``httpx.AsyncClient`` / ``httpx.Client``. The baselines get the
   same pool limits as VLLMReranker (keep-alive for every connection), or
   httpx's default of 20 kept-alive connections would make them reconnect.
   Goal: within 1.3x, and no new connection per call.

3. This process's CPU time per call (``time.process_time``; the server runs in
   another process) for 20 and 100 documents: the client's own cost, which other
   programs on the machine barely disturb.

Timings are wall-clock, interleaved in rounds (baseline, then ours), and the
table shows the median round. On a shared machine run it twice; the ratio
matters more than the absolute numbers, and the CPU rows are the steadiest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen_rerank import VLLMReranker  # noqa: E402
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, split_prompts  # noqa: E402

QUERY = "how do giant pandas survive on a diet of bamboo?"
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)


def make_documents(count: int, chars: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [
        "panda",
        "bamboo",
        "forest",
        "china",
        "bear",
        "habitat",
        "digest",
        "energy",
        "climb",
        "sleep",
        "leaf",
        "stem",
    ]
    docs = []
    for _ in range(count):
        text = ""
        while len(text) < chars:
            text += rng.choice(words) + " "
        docs.append(text.strip())
    return docs


def same_json(docs: list[str]) -> dict[str, object]:
    """The body VLLMReranker sends for ``docs`` (template='client', model=None)."""
    query_text, texts = split_prompts(QUERY, docs, DEFAULT_INSTRUCTION)
    return {"query": query_text, "documents": texts}


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qwen_rerank.testing.fake_vllm", "--instant"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise SystemExit(f"the fake server did not start: {self.url!r}")

    def connections(self) -> int:
        return int(httpx.get(self.url + "/stats").json()["connections"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def timed(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def per_call(server: Server, rounds: int, calls: int) -> tuple[list[float], list[float], list[float]]:
    docs = make_documents(100, 600, seed=1)
    body = same_json(docs)
    url = server.url + "/v1/rerank"
    client = httpx.Client(limits=LIMITS)
    reranker = VLLMReranker(server.url)

    def bare() -> object:
        return client.post(url, json=body)

    def bare_json() -> object:
        return client.post(url, json=body).json()

    def ours() -> object:
        return reranker.rerank(QUERY, docs)

    assert json.loads(reranker_body(server.url, docs)) == body, (
        "the baseline must post what VLLMReranker posts"
    )
    for fn in (bare, bare_json, ours):
        timed(fn, calls // 4 or 1)  # warm up
    a, b, c = [], [], []
    for _ in range(rounds):
        a.append(timed(bare, calls))
        b.append(timed(bare_json, calls))
        c.append(timed(ours, calls))
    client.close()
    reranker.close()
    return a, b, c


def cpu_per_call(server: Server, docs_count: int, rounds: int, calls: int) -> tuple[float, float]:
    """This process's CPU seconds per call (the server runs elsewhere): best round, baseline and ours.

    CPU time barely moves when other programs load the machine, unlike wall-clock time.
    """
    docs = make_documents(docs_count, 600, seed=3)
    body = same_json(docs)
    url = server.url + "/v1/rerank"
    client = httpx.Client(limits=LIMITS)
    reranker = VLLMReranker(server.url)
    best = {"base": float("inf"), "ours": float("inf")}
    work = {"base": lambda: client.post(url, json=body).json(), "ours": lambda: reranker.rerank(QUERY, docs)}
    for _ in range(rounds):
        for name, fn in work.items():
            start = time.process_time()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / calls)
    client.close()
    reranker.close()
    return best["base"], best["ours"]


def reranker_body(url: str, docs: list[str]) -> str:
    """The body VLLMReranker posts for ``docs``, caught by a request hook."""
    captured: list[bytes] = []

    def hook(request: httpx.Request) -> None:
        captured.append(request.read())

    with httpx.Client(event_hooks={"request": [hook]}) as client:
        VLLMReranker(url, http_client=client).score(QUERY, docs)
    return captured[0].decode()


def async_rate(
    server: Server, callers: int, calls_each: int, docs: list[str]
) -> tuple[float, float, int, int]:
    body = same_json(docs)
    url = server.url + "/v1/rerank"

    async def run_baseline() -> float:
        async with httpx.AsyncClient(limits=LIMITS) as client:

            async def caller() -> None:
                for _ in range(calls_each):
                    (await client.post(url, json=body)).json()

            await caller()  # warm up one connection
            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(callers)))
            return callers * calls_each / (time.perf_counter() - start)

    async def run_ours() -> float:
        reranker = VLLMReranker(server.url)

        async def caller() -> None:
            for _ in range(calls_each):
                await reranker.arerank(QUERY, docs)

        await caller()
        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        rate = callers * calls_each / (time.perf_counter() - start)
        await reranker.aclose()
        return rate

    c0 = server.connections()
    base = asyncio.run(run_baseline())
    c1 = server.connections()
    ours = asyncio.run(run_ours())
    c2 = server.connections()
    return base, ours, c1 - c0 - 1, c2 - c1 - 1  # minus the /stats request's own connection


def thread_rate(
    server: Server, threads: int, calls_each: int, docs: list[str]
) -> tuple[float, float, int, int]:
    body = same_json(docs)
    url = server.url + "/v1/rerank"

    def run(work: Callable[[], object]) -> float:
        barrier = threading.Barrier(threads + 1)

        def loop() -> None:
            barrier.wait()
            for _ in range(calls_each):
                work()

        pool = [threading.Thread(target=loop) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in pool:
            t.join()
        return threads * calls_each / (time.perf_counter() - start)

    client = httpx.Client(limits=LIMITS)
    reranker = VLLMReranker(server.url)
    c0 = server.connections()
    base = run(lambda: client.post(url, json=body).json())
    c1 = server.connections()
    ours = run(lambda: reranker.rerank(QUERY, docs))
    c2 = server.connections()
    client.close()
    reranker.close()
    return base, ours, c1 - c0 - 1, c2 - c1 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, calls, scale = (3, 20, 1) if args.quick else (7, 60, 3)

    server = Server()
    try:
        bare, bare_json, ours = per_call(server, rounds, calls)
        cpu = {n: cpu_per_call(server, n, rounds, calls) for n in (20, 100)}
        docs = make_documents(20, 600, seed=2)
        async_rounds = [async_rate(server, 32, 5 * scale, docs) for _ in range(rounds)]
        thread_rounds = [thread_rate(server, 8, 20 * scale, docs) for _ in range(rounds)]
    finally:
        server.stop()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"VLLMReranker vs plain httpx on loopback ({rounds} rounds; median round shown, spread in brackets)"
    )
    print()
    print(f"{'measure':46} {'baseline':>12} {'VLLMReranker':>13} {'ratio':>7} {'goal':>7}")
    b, j, o = med(bare) * 1e3, med(bare_json) * 1e3, med(ours) * 1e3
    print(f"{'per call, 100 docs, ms (post only)':46} {b:12.3f} {o:13.3f} {o / b:7.2f} {'<= 1.2':>7}")
    print(f"{'per call, 100 docs, ms (post + .json())':46} {j:12.3f} {o:13.3f} {o / j:7.2f} {'<= 1.2':>7}")
    print(
        f"{'  client work per call, us (ours - post+json)':46} {'':12} {(o - j) * 1e3:13.0f}"
        f"   spread ms: base {min(bare_json) * 1e3:.3f}-{max(bare_json) * 1e3:.3f}, "
        f"ours {min(ours) * 1e3:.3f}-{max(ours) * 1e3:.3f}"
    )
    for n, (base_cpu, our_cpu) in cpu.items():
        label = f"client CPU per call, {n} docs, us (best round)"
        print(f"{label:46} {base_cpu * 1e6:12.0f} {our_cpu * 1e6:13.0f} {our_cpu / base_cpu:7.2f}")
    for name, results, calls_each, callers in (
        ("32 async callers, calls/s", async_rounds, 5 * scale, 32),
        ("8 threads, calls/s", thread_rounds, 20 * scale, 8),
    ):
        base_rate, our_rate = med([r[0] for r in results]), med([r[1] for r in results])
        print(
            f"{name:46} {base_rate:12.0f} {our_rate:13.0f} {base_rate / our_rate:7.2f} {'<= 1.3':>7}"
            f"   spread: base {min(r[0] for r in results):.0f}-{max(r[0] for r in results):.0f}, "
            f"ours {min(r[1] for r in results):.0f}-{max(r[1] for r in results):.0f}"
        )
        base_conn = max(r[2] for r in results)
        our_conn = max(r[3] for r in results)
        total = callers * (calls_each + (1 if "async" in name else 0))
        print(f"{'  new connections per run':46} {base_conn:12d} {our_conn:13d}   ({total} calls per run)")
    print()
    print("ratio: time ours / baseline for per-call rows; calls/s baseline / ours for throughput rows.")


if __name__ == "__main__":
    main()
