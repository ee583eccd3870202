"""Rerank a Haystack BM25 retriever's results with Qwen3-Reranker, inside a Pipeline.

    python examples/haystack_pipeline.py                      # Qwen/Qwen3-Reranker-0.6B (downloads once)
    python examples/haystack_pipeline.py --model PATH_OR_ID   # any Qwen3-Reranker checkpoint
    python examples/haystack_pipeline.py --tiny               # offline: a tiny random model (cached)

An InMemoryDocumentStore and an InMemoryBM25Retriever find candidates by keywords;
QwenRanker reorders them by meaning. The tiny model's weights are random, so its
ranking means nothing; it exercises the real code path with no download.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from haystack_qwen_rerank import QwenRanker
from qwen_rerank import DEFAULT_MODEL

QUERY = "What is the capital of China?"
TEXTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "China is a country in East Asia with a population of over 1.4 billion.",
    "Paris is the capital of France.",
    "The Great Wall of China was built over many centuries.",
    "Shanghai is the largest city in China by population.",
    "A capital letter starts every sentence.",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint folder")
    group.add_argument("--tiny", action="store_true", help="use a tiny random model (offline)")
    parser.add_argument("--top-n", type=int, default=3, help="documents to keep after reranking")
    args = parser.parse_args()

    model = args.model
    if args.tiny:
        from qwen_rerank.testing import make_tiny_reranker

        model = str(make_tiny_reranker())  # built once, then cached
        print("Using a tiny random model: the scores below carry no meaning.\n")

    store = InMemoryDocumentStore()
    store.write_documents([Document(id=f"doc-{i}", content=text) for i, text in enumerate(TEXTS)])
    retriever = InMemoryBM25Retriever(document_store=store, top_k=6)

    print(f"Query: {QUERY}\n\nBefore (BM25, top 6):")
    for rank, doc in enumerate(retriever.run(query=QUERY)["documents"], start=1):
        print(f"{rank}. {doc.content}  (BM25 score {doc.score:.2f})")

    # The whole integration: one more component after the retriever you already have.
    pipeline = Pipeline()
    pipeline.add_component("retriever", retriever)
    pipeline.add_component("ranker", QwenRanker(model, top_k=args.top_n))
    pipeline.connect("retriever.documents", "ranker.documents")
    result = pipeline.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY}})

    print(f"\nAfter (QwenRanker, top {args.top_n}):")
    for rank, doc in enumerate(result["ranker"]["documents"], start=1):
        print(f"{rank}. {doc.score:.4f}  {doc.content}")


if __name__ == "__main__":
    main()
