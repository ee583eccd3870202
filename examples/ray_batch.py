"""Rerank a dataset of (query, document) pairs with Ray Data, as you would on a cluster.

    pip install "qwen-rerank[local,ray]"
    python examples/ray_batch.py --tiny                     # offline: a tiny random model
    python examples/ray_batch.py --model Qwen/Qwen3-Reranker-0.6B
    python examples/ray_batch.py --base-url http://GPU_HOST:8000      # CPU actors calling vLLM

It builds a few hundred pairs (candidates of a first-stage retriever, here
made up), scores them with ``RerankPredictor`` in ``map_batches``, and prints
the reranked candidates of the first query. On a real cluster, read your pairs
with ``ray.data.read_parquet`` and give each actor a GPU (see docs/datasets.md).
The tiny model's weights are random, so its ranking means nothing.

Ray's own log lines are turned down, but one line on stderr comes from its C++
core, out of reach of Python's logging: a ``core_worker.cc`` warning that the
actor "has constructor arguments in the object store and max_restarts > 0"
(ray issue 53727). Ray Data restarts its actors by default; the warning is
harmless here, and no public option of Ray 2.60 turns it off.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from typing import Any

import ray

from qwen_rerank.integrations.ray import RerankPredictor

QUERIES = [
    "What is the capital of China?",
    "How do giant pandas live?",
    "When was the Great Wall built?",
    "北京有哪些著名的景点？",
]
TEXTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "Giant pandas live in mountain forests of central China and eat bamboo.",
    "Paris is the capital of France.",
    "The Great Wall of China was built over many centuries, from the 7th century BC.",
    "故宫和天坛是北京最著名的景点。",
    "China is a country in East Asia with a population of over 1.4 billion.",
]


def make_pairs(copies: int = 8) -> list[dict[str, Any]]:
    """Every query with every text, ``copies`` times over (each copy a distinct document)."""
    return [
        {"pair_id": f"{q}-{t}-{c}", "query": query, "document": text if c == 0 else f"{text} ({c})"}
        for q, query in enumerate(QUERIES)
        for t, text in enumerate(TEXTS)
        for c in range(copies)
    ]


def rerank_pairs(
    pairs: list[dict[str, Any]], *, batch_size: int = 64, batch_format: str = "numpy", **options: Any
) -> list[dict[str, Any]]:
    """``pairs`` with a ``score``, scored by Ray actors; ``options`` go to ``create_reranker``."""
    dataset = ray.data.from_items(pairs)
    scored = dataset.map_batches(
        RerankPredictor,
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        batch_format=batch_format,
        compute=ray.data.ActorPoolStrategy(size=1),  # one actor; on a cluster one per GPU, with num_gpus=1
    )
    return scored.take_all()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--model", help="checkpoint folder or hub id (default Qwen3-Reranker-0.6B)")
    backend.add_argument("--tiny", action="store_true", help="use a tiny random model (offline)")
    backend.add_argument("--base-url", help="score through this vLLM server instead")
    parser.add_argument("--top-n", type=int, default=3, help="candidates to print for the first query")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = parser.parse_args()

    options: dict[str, Any] = {"model": args.model}
    if args.tiny:
        from qwen_rerank.testing import make_tiny_reranker

        options["model"] = str(make_tiny_reranker())  # built once, then cached
    if args.base_url:
        options["base_url"] = args.base_url
    elif options["model"]:
        options["device"] = "cpu"  # this demo runs on one machine; on a cluster, let each actor use its GPU

    pairs = make_pairs()
    # Ray keeps its session files (sockets, logs, spilled objects) in a temporary folder of ours,
    # removed at the end; its Python log lines and Ray Data's progress reports are turned down
    # (its C++ core's warning about max_restarts is not: see above).
    with tempfile.TemporaryDirectory(prefix="ray-") as ray_dir:
        ray.init(
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            _temp_dir=ray_dir,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        try:
            rows = rerank_pairs(pairs, **options)
        finally:
            ray.shutdown()
    print(f"Scored {len(rows)} pairs of {len(QUERIES)} queries.\n")

    query = QUERIES[0]
    candidates = [row for row in pairs if row["query"] == query and row["pair_id"].endswith("-0")]
    print(f"Query: {query}\n\nBefore (as retrieved):")
    for rank, row in enumerate(candidates, start=1):
        print(f"{rank}. {row['document']}")
    best = sorted(
        (row for row in rows if row["query"] == query and row["pair_id"].endswith("-0")),
        key=lambda row: -row["score"],
    )
    print(f"\nAfter (top {args.top_n}):")
    for rank, row in enumerate(best[: args.top_n], start=1):
        print(f"{rank}. {row['score']:.4f}  {row['document']}")


if __name__ == "__main__":
    main()
