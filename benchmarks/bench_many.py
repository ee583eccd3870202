"""score_many against a loop of score calls, locally and against vLLM replicas, in the same run.

    .venv/bin/python benchmarks/bench_many.py                   # both parts (minutes on CPU)
    .venv/bin/python benchmarks/bench_many.py --part remote     # the remote part alone (seconds)
    .venv/bin/python benchmarks/bench_many.py --layers 2        # a smoke run of the local part

Local: a random model with Qwen3-Reranker-0.6B's exact sizes (as in
bench_local.py) and the real tokenizer, in bfloat16 on CPU by default. Two
workloads of 64 queries: 2 documents of ~50 tokens each (an evaluation with
shallow candidate lists; goal: score_many at least 1.5x the loop), and 8 such
documents each (prefix reuse already batches each query well; goal: no slower).

Remote: 4 fake vLLM replicas on loopback (qwen_rerank.testing.fake_vllm, instant
scores) that each wait 100 ms before answering a request, as a busy GPU server
would; 32 queries of 20 documents; score_many with max_concurrency=8 against a
loop of score (goal: at least 6x), and how the requests spread over the replicas.

Timings are wall-clock on whatever else the machine runs (the load average is
printed): on a shared machine, run it twice and trust the better run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from qwen_rerank import LocalReranker, VLLMReranker
from qwen_rerank.testing import make_tiny_reranker
from qwen_rerank.testing.fake_vllm import FakeVLLMServer

TEXT = (
    "the wall was built over many centuries by successive dynasties to guard the northern frontier "
    "soldiers manned watchtowers and signal fires carried warnings across hundreds of miles while "
    "garrisons stored grain and weapons in forts along the route rammed earth stone and brick were "
    "used depending on local materials and the terrain of mountains deserts and plains"
)
WORDS = TEXT.split()

Requests = list[tuple[str, list[str]]]


def make_requests(queries: int, documents: int, doc_words: int, seed: int = 0) -> Requests:
    """``queries`` distinct queries of ~12 words, each with ``documents`` texts of ``doc_words`` words."""
    rng = random.Random(seed)
    return [
        (
            f"question {q}: " + " ".join(rng.choice(WORDS) for _ in range(12)) + "?",
            [
                " ".join(rng.choice(WORDS) for _ in range(doc_words)).capitalize() + "."
                for _ in range(documents)
            ],
        )
        for q in range(queries)
    ]


def best_time(run: Callable[[], list[list[float]]], repeats: int) -> tuple[float, list[list[float]]]:
    best, out = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def compare(name: str, reranker: object, requests: Requests, repeats: int, goal: str) -> float:
    """Time score_many and the loop on ``requests``; print pairs/s, the ratio and the largest difference."""
    many_call = reranker.score_many  # type: ignore[attr-defined]
    score = reranker.score  # type: ignore[attr-defined]
    pairs = sum(len(docs) for _, docs in requests)
    loop_s, loop = best_time(lambda: [score(q, d) for q, d in requests], repeats)
    many_s, many = best_time(lambda: many_call(requests), repeats)
    diff = max(abs(a - b) for x, y in zip(many, loop, strict=True) for a, b in zip(x, y, strict=True))
    print(f"{name}: {len(requests)} queries x {len(requests[0][1])} documents = {pairs} pairs")
    print(f"  loop of score : {pairs / loop_s:8.1f} pairs/s ({loop_s:.2f} s)")
    print(f"  score_many    : {pairs / many_s:8.1f} pairs/s ({many_s:.2f} s)")
    print(f"  ratio {loop_s / many_s:.2f}x (goal: {goal}), max |score difference| {diff:.1e}")
    return loop_s / many_s


def bench_local(args: argparse.Namespace) -> None:
    print(f"\n[local: {args.layers} layers, {args.dtype}, {args.device}, {torch.get_num_threads()} threads]")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = make_tiny_reranker(
            Path(tmp),
            hidden_size=1024,
            num_hidden_layers=args.layers,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            intermediate_size=3072,
            initializer_range=0.02,
        )
        reranker = LocalReranker(str(path), device=args.device, dtype=args.dtype)
        seconds = time.perf_counter() - started
        print(f"model built and loaded in {seconds:.0f} s; budget {reranker.max_batch_tokens} tokens")
        shallow = make_requests(64, 2, 40)
        tokens = [len(ids) for ids in reranker.prompt_tokenizer.encode_text(shallow[0][1])]
        print(f"documents of {min(tokens)}..{max(tokens)} tokens")
        reranker.score_many(shallow[:2])  # warm-up
        if "shallow" in args.workloads:
            compare("shallow", reranker, shallow, args.repeats, ">= 1.5x")
        if "deeper" in args.workloads:
            compare("deeper", reranker, make_requests(64, 8, 40, seed=1), args.repeats, ">= 1.0x")


def bench_remote(args: argparse.Namespace) -> None:
    print(f"\n[remote: 4 fake replicas, {args.delay * 1000:.0f} ms per request]")
    servers = [FakeVLLMServer().start() for _ in range(4)]
    try:
        for server in servers:
            server.add_fault("delay", times=10**9, seconds=args.delay)
        requests = make_requests(32, 20, 40, seed=2)
        with VLLMReranker([s.url for s in servers], max_concurrency=8) as reranker:
            reranker.score(*requests[0])  # warm-up: open connections
            before = [len(s.rerank_requests) for s in servers]
            compare("remote", reranker, requests, 1, ">= 6x")
            counts = [len(s.rerank_requests) for s in servers]
        spread = [after - b for after, b in zip(counts, before, strict=True)]
        print(f"  requests per replica over both runs: {spread} (even: {sum(spread) // len(spread)} each)")
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("local", "remote", "both"), default="both")
    parser.add_argument("--layers", type=int, default=28, help="decoder layers (28 is the real 0.6B)")
    parser.add_argument("--workloads", default="shallow,deeper", help="local workloads: shallow,deeper")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method; the best counts")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each fake replica waits")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    print(f"torch {torch.__version__}; load average before: {os.getloadavg()[0]:.2f}")
    if args.part in ("remote", "both"):
        bench_remote(args)
    if args.part in ("local", "both"):
        bench_local(args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (other work on the machine slows every number)")


if __name__ == "__main__":
    main()
