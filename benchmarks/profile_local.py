"""Profile one LocalReranker call on the 0.6B width cut to a few layers: top operators and their share.

    .venv/bin/python benchmarks/profile_local.py --layers 4 --busy 2
    .venv/bin/python benchmarks/profile_local.py --case long

``--busy N`` starts N competing single-thread processes (as ``bench_local.py``
does) before the profiled call. It prints the wall time of the call, the
number of forward passes, and the operators with the most CPU time, each with
its share of the total, with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_local import INSTRUCTION, QUERY, build_model, busy_processes, make_documents, sized_text

from qwen_rerank import LocalReranker


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--case", choices=["mixed", "long"], default="mixed")
    parser.add_argument("--busy", type=int, default=0, help="competing single-thread processes")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp), args.layers)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        if args.case == "mixed":
            docs = make_documents(tokenizer, 32, 0)
        else:
            docs = [sized_text(tokenizer, 4000, seed) for seed in range(4)]
        reranker = LocalReranker(str(path), device="cpu", dtype=args.dtype)
        reranker.score(QUERY, docs[:2], instruction=INSTRUCTION)  # warm-up
        with busy_processes(args.busy):
            reranker.score(QUERY, docs, instruction=INSTRUCTION)
            start = time.perf_counter()
            # Passes may run on worker threads: record every thread, not only this one.
            config = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
            with profile(activities=[ProfilerActivity.CPU], experimental_config=config) as prof:
                reranker.score(QUERY, docs, instruction=INSTRUCTION)
            seconds = time.perf_counter() - start
            load = os.getloadavg()[0]
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    passes = sum(e.count for e in events if e.key == "aten::embedding")
    print(
        f"{args.case}, {args.dtype}, {args.layers} layers, {torch.get_num_threads()} threads, "
        f"busy {args.busy}: "
        f"{seconds:.2f} s (profiled), {passes} forward passes, load average {load:.2f}"
    )
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        share = 100 * event.self_cpu_time_total / total
        print(f"  {event.key:44} {share:5.1f}%  {event.count:6d} calls")


if __name__ == "__main__":
    main()
