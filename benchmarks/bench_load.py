"""How long `import qwen_rerank` and loading `LocalReranker` on the tiny model take, in fresh processes.

    .venv/bin/python benchmarks/bench_load.py            # best of 3 fresh processes each
    .venv/bin/python benchmarks/bench_load.py --runs 5

Each measurement runs in a new Python process, so nothing is imported yet:
the first is ``import qwen_rerank``; the second is ``import qwen_rerank`` then
``LocalReranker(tiny model, device="cpu")``, which imports torch and
transformers, builds the tokenizer and loads the weights. The tiny model is
built (or found in the per-user cache) first, and one untimed load warms the
disk cache and the tokenizer cache, so the numbers are those of a warm disk.
It prints the best and every run, with the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

IMPORT = "import time; t = time.perf_counter(); import qwen_rerank; print(time.perf_counter() - t)"
LOAD = (
    "import time; t = time.perf_counter(); import qwen_rerank; "
    "qwen_rerank.LocalReranker({path!r}, device='cpu'); print(time.perf_counter() - t)"
)


def fresh(code: str) -> float:
    """Seconds that ``code`` prints, run in a new interpreter."""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement; best counts")
    args = parser.parse_args()
    from qwen_rerank.testing import make_tiny_reranker

    path = str(make_tiny_reranker())
    fresh(LOAD.format(path=path))  # warm the disk and the tokenizer cache
    for name, code in (("import qwen_rerank", IMPORT), ("LocalReranker(tiny)", LOAD.format(path=path))):
        times = [fresh(code) for _ in range(args.runs)]
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name:22} best {min(times):6.3f} s  (runs: {runs}; load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
