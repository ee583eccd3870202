"""Rerank a handful of passages with Qwen3-Reranker.

    python examples/quickstart.py                      # Qwen/Qwen3-Reranker-0.6B (downloads once)
    python examples/quickstart.py --model PATH_OR_ID   # any Qwen3-Reranker checkpoint
    python examples/quickstart.py --tiny               # offline: a tiny random model, built once and cached

The tiny model's weights are random, so its ranking means nothing; it exercises
the real code path with no download.
"""

from __future__ import annotations

import argparse

from qwen_rerank import DEFAULT_MODEL, LocalReranker

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "China is a country in East Asia with a population of over 1.4 billion.",
    "Paris is the capital of France.",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint folder")
    group.add_argument("--tiny", action="store_true", help="use a tiny random model (offline)")
    args = parser.parse_args()

    model = args.model
    if args.tiny:
        from qwen_rerank.testing import make_tiny_reranker

        model = str(make_tiny_reranker())
        print("Using a tiny random model: the scores below carry no meaning.\n")

    reranker = LocalReranker(model)
    print(f"{reranker!r}\nQuery: {QUERY}\n")
    for rank, result in enumerate(reranker.rerank(QUERY, DOCUMENTS), start=1):
        print(f"{rank}. [{result.index}] {result.score:.4f}  {result.document}")


if __name__ == "__main__":
    main()
