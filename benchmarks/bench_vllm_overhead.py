"""The client's overhead: VLLMReranker against raw httpx calls carrying the same batches, on one real vLLM.

    .venv/bin/python benchmarks/bench_vllm_overhead.py                      # the 4-layer model
    .venv/bin/python benchmarks/bench_vllm_overhead.py --model tiny         # the tiny test model
    .venv/bin/python benchmarks/bench_vllm_overhead.py --out benchmarks/results/vllm_overhead.md

It needs vLLM built for this CPU (``python -m qwen_rerank.testing.vllm_server``). One server
(float32, no ``--chat-template``) serves the model: the 4-layer model of bench_local.py
(Qwen3-Reranker-0.6B's width, random weights) or the tiny test model (head_dim 32), where
the server's work is smallest and the client's share largest.

Workload: bench_local.py's query and ``--documents`` documents of 30 to 500 tokens, English
and Chinese, sent as ``--batch``-document requests one after another (``max_concurrency=1``,
so both sides send the same requests in the same order). Three ways, timed in alternation,
``--repeats`` times each, the median counting:

- raw: the request bodies built once beforehand (the model card's prompt split as vLLM
  scores it), posted with one ``httpx.Client``, each reply parsed with ``json.loads``: the
  server's time, plus the least any client must do;
- VLLMReranker: ``score(query, documents)``, building the bodies, checking and mapping
  the replies by index;
- VLLMReranker with ``tokenizer=``: the same, with each prompt cut to ``max_length`` on
  the client (none is long enough to be cut; every document is tokenized).

Overhead is the reranker's median time over raw's, less one. Measured on 2026-12-07, 2 CPU
cores shared with other jobs (benchmarks/results/vllm_overhead-2026-12-07.md): on the tiny
model the client costs about 4 ms for 32 documents (+7.5% over a 45 ms server time) and 21 ms
with ``tokenizer=``; on the 4-layer model (2 to 3 s of server time) that is 0.2% (0.8%),
below the noise of the load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llama_server import cached_model
from bench_local import INSTRUCTION, QUERY, cpu_description, make_documents

from qwen_rerank import VLLMReranker
from qwen_rerank.prompt import escape_control_tokens, split_prompts
from qwen_rerank.remote._bodies import chunk_bounds
from qwen_rerank.testing import make_tiny_reranker
from qwen_rerank.testing.vllm_server import VLLMServer, built_vllm


def raw_bodies(documents: list[str], batch: int) -> list[bytes]:
    """The bodies a bare client sends: the split prompt of each batch, as JSON."""
    query_text, texts = split_prompts(QUERY, [escape_control_tokens(d) for d in documents], INSTRUCTION)
    return [
        json.dumps({"query": query_text, "documents": texts[start:end]}).encode()
        for start, end in chunk_bounds(len(texts), batch)
    ]


def raw_call(client: httpx.Client, url: str, bodies: list[bytes]) -> list[float]:
    scores: list[float] = []
    for body in bodies:
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
        response.raise_for_status()
        results = sorted(json.loads(response.content)["results"], key=lambda r: r["index"])
        scores += [r["relevance_score"] for r in results]
    return scores


def timed(call: Callable[[], list[float]]) -> tuple[float, list[float]]:
    started = time.perf_counter()
    scores = call()
    return time.perf_counter() - started, scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["4-layer", "tiny"], default="4-layer")
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    python = built_vllm()
    if python is None:
        sys.exit("vLLM is not built for this CPU: python -m qwen_rerank.testing.vllm_server builds it.")
    # The 4-layer model is the one bench_llama_server.py keeps in the per-user cache.
    model = make_tiny_reranker(head_dim=32) if args.model == "tiny" else cached_model(4)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    documents = make_documents(tokenizer, args.documents, seed=0)
    bodies = raw_bodies(documents, args.batch)
    load_before = os.getloadavg()
    with VLLMServer(model, python=python, max_model_len=1024, startup_timeout=900) as server:
        url = server.url + "/v1/rerank"
        options = {"max_documents_per_request": args.batch, "max_concurrency": 1}
        with (
            httpx.Client(timeout=600) as client,
            VLLMReranker(server.url, **options) as plain,
            VLLMReranker(server.url, tokenizer=str(model), max_length=1024, **options) as cutting,
        ):
            ways: dict[str, Callable[[], list[float]]] = {
                "raw httpx": lambda: raw_call(client, url, bodies),
                "VLLMReranker": lambda: plain.score(QUERY, documents),
                "VLLMReranker, tokenizer=": lambda: cutting.score(QUERY, documents),
            }
            for call in ways.values():
                call()  # warm-up: connections, the server's first batches
            times: dict[str, list[float]] = {name: [] for name in ways}
            scores: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for name, call in ways.items():
                    seconds, scores[name] = timed(call)
                    times[name].append(seconds)
    load_after = os.getloadavg()
    report = render(args, times, scores, load_before, load_after)
    print(report)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(report + "\n")


def render(
    args: argparse.Namespace,
    times: dict[str, list[float]],
    scores: dict[str, list[float]],
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> str:
    raw = statistics.median(times["raw httpx"])
    lines = [
        f"## {datetime.date.today()}: {args.model} model, {args.documents} documents in requests of "
        f"{args.batch}, median of {args.repeats}",
        "",
        f"CPU: {cpu_description()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; Python {platform.python_version()}, vLLM 0.33.0 (CPU build, float32).",
        f"Command: `python benchmarks/bench_vllm_overhead.py --model {args.model} --documents "
        f"{args.documents} --batch {args.batch} --repeats {args.repeats}`",
        "",
        "| way | median s | min s | max s | overhead over raw | max score diff from raw |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        diff = max(abs(a - b) for a, b in zip(scores[name], scores["raw httpx"], strict=True))
        overhead = "-" if name == "raw httpx" else f"{(median / raw - 1) * 100:+.1f}%"
        lines.append(
            f"| {name} | {median:.3f} | {min(values):.3f} | {max(values):.3f} | {overhead} | {diff:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
