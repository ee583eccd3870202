"""llama.cpp's llama-server (F16 and Q8_0 GGUFs) against LocalReranker bf16, on the 0.6B width.

    .venv/bin/python benchmarks/bench_llama_server.py                  # 4 layers, F16 and Q8_0
    .venv/bin/python benchmarks/bench_llama_server.py --out benchmarks/results/llama_server.txt

The model has Qwen3-Reranker-0.6B's width (hidden 1024, 16 query and 8 key/value heads of
128, intermediate 3072, the real vocabulary and tokenizer) cut to ``--layers`` decoder
layers, with random weights (see bench_local.py); it is kept in the per-user cache, and
its GGUFs are converted once with the pinned llama.cpp's ``convert_hf_to_gguf.py``.

Workload: bench_local.py's query and ``--documents`` documents of 30 to 500 tokens,
English and Chinese mixed. Each method scores them ``--repeats`` times; the best run
counts, and the methods are timed in alternation so that load from other work hits all
alike. Every method runs on ``--threads`` CPU threads: ``torch.set_num_threads`` for
LocalReranker, ``-t`` for llama-server (one request of all documents, which the server
spreads over its slots).

It prints, per method, the best time, prompt tokens per second (the server's own count
of the tokens it ran; LocalReranker runs the shared prefix once, so it runs fewer), and
the largest score difference from LocalReranker in float32, the reference. With
``--out`` the report is also written to that file, headed by the date, the CPU model,
the llama-server build flags and the load average before and after.

Measured on 2026-12-02, 2 CPU cores shared with other jobs (load average 17 to 20), 4 layers,
12 documents, best of 2 (``--documents 12 --repeats 2 --quants f16,q8_0,f32``; the report is
benchmarks/results/llama_server-2026-12-02.txt):

    LocalReranker bf16   30.3 s   140 prompt tokens/s  max |score - fp32| 0.0043
    llama-server F16    171.0 s    25 prompt tokens/s  max |score - fp32| 0.0006
    llama-server Q8_0   109.4 s    39 prompt tokens/s  max |score - fp32| 0.0097
    llama-server F32    125.2 s    34 prompt tokens/s  max |score - fp32| 0.0001

The build flags are right (Release, GGML_NATIVE with AVX-512, OpenMP, ``-t 2``). Most of
the gap is work LocalReranker does not do: in rerank (embedding) mode llama-server marks
every prompt token as an output, and its Qwen3 graph projects each output token onto the
whole 151,669-token vocabulary before pooling. That is about 310 MFLOP a token at the 0.6B
width, against about 130 for these 4 layers (and 880 for the real 28). On the tiny test model,
where that projection is nearly all the work, one 2,174-token prompt took 9.2 s on
llama-server against 0.25 s for LocalReranker (1 thread each, load average 15).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import QUERY, build_model, cpu_description, make_documents

from qwen_rerank import LocalReranker, VLLMReranker
from qwen_rerank._paths import user_cache_dir
from qwen_rerank.testing.llama_server import (
    LLAMA_CPP_PYTHON_VERSION,
    LlamaServer,
    build_llama_server,
    convert_to_gguf,
)


def cached_model(layers: int) -> Path:
    """The random 0.6B-width model of ``layers`` layers, built once into the per-user cache."""
    folder = user_cache_dir() / "bench" / f"qwen3-reranker-0.6b-width-{layers}-layers"
    if not (folder / "model.safetensors").is_file():
        build_model(folder, layers)
    return folder


def build_flags() -> str:
    cache = user_cache_dir() / "llama.cpp" / LLAMA_CPP_PYTHON_VERSION / "build" / "CMakeCache.txt"
    if not cache.is_file():
        return "unknown (no CMakeCache.txt)"
    wanted = ("CMAKE_BUILD_TYPE", "GGML_NATIVE", "GGML_OPENMP", "GGML_BLAS")
    flags = [line for line in cache.read_text().splitlines() if line.split(":", 1)[0] in wanted]
    return ", ".join(flags)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quants", default="f16,q8_0", help="GGUF types, comma-separated")
    parser.add_argument("--ubatch", type=int, default=512, help="llama-server -ub")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    torch.set_num_threads(args.threads)
    say(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    say(f"cpu: {cpu_description()}; load average before: {os.getloadavg()}")
    say(f"llama.cpp from llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}; build: {build_flags()}")
    say(f"model: 0.6B width, {args.layers} layers, random weights; threads: {args.threads}")
    model = cached_model(args.layers)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
    documents = make_documents(tokenizer, args.documents, seed=0)
    reference = LocalReranker(str(model), device="cpu", dtype="float32").score(QUERY, documents)
    bf16 = LocalReranker(str(model), device="cpu", dtype="bfloat16")
    methods: dict[str, Any] = {"LocalReranker bf16": bf16}
    servers: list[LlamaServer] = []
    binary = build_llama_server()
    try:
        for quant in args.quants.split(","):
            gguf = convert_to_gguf(model, outtype=quant)
            server = LlamaServer(gguf, binary=binary, threads=args.threads, ctx=8192, ubatch=args.ubatch)
            try:
                server.start()
            except Exception as exc:  # a GGUF the server cannot load is a finding, not the end
                say(f"llama-server {quant.upper()}: did not start: {str(exc)[-600:]}")
                continue
            servers.append(server)
            methods[f"llama-server {quant.upper()}"] = VLLMReranker(server.url, api="llamacpp", timeout=600)
        best: dict[str, float] = {}
        scores: dict[str, list[float]] = {}
        tokens: dict[str, int | None] = {}
        for _ in range(args.repeats):
            for name, reranker in methods.items():
                started = time.perf_counter()
                scores[name] = reranker.score(QUERY, documents)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
                usage = getattr(reranker, "last_usage", None)
                tokens[name] = usage.prompt_tokens if usage is not None else None
        server_tokens = next((t for t in tokens.values() if t), None)
        say(f"{args.documents} documents, {server_tokens} prompt tokens in all (llama-server's count)")
        for name in methods:
            diff = max(abs(a - b) for a, b in zip(scores[name], reference, strict=True))
            rate = f"{server_tokens / best[name]:7.0f} prompt tokens/s" if server_tokens else ""
            say(f"  {name:<20} best {best[name]:7.2f} s  {rate}  max |score - fp32| {diff:.4f}")
    finally:
        for server in servers:
            server.stop()
    say(f"load average after: {os.getloadavg()}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
