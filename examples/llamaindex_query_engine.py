"""Rerank a LlamaIndex query engine's retrieved nodes with Qwen3-Reranker.

    python examples/llamaindex_query_engine.py                     # Qwen/Qwen3-Reranker-0.6B (downloads once)
    python examples/llamaindex_query_engine.py --model PATH_OR_ID  # any Qwen3-Reranker checkpoint
    python examples/llamaindex_query_engine.py --tiny              # offline: a tiny random model

A VectorStoreIndex retrieves candidates and QwenRerank, a node postprocessor,
reorders them before the LLM sees them. The LLM and the embedding model are
LlamaIndex's mocks, so the example runs without API keys: pass yours as
``llm=`` and ``embed_model=`` (or set ``llama_index.core.Settings``). The tiny
model's weights are random, so its ranking means nothing; it exercises the
real code path with no download.
"""

from __future__ import annotations

import argparse

from llama_index.core import Document, MockEmbedding, VectorStoreIndex
from llama_index.core.llms import MockLLM

from llamaindex_qwen_rerank import QwenRerank
from qwen_rerank import DEFAULT_MODEL

QUERY = "What is the capital of China?"
TEXTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "China is a country in East Asia with a population of over 1.4 billion.",
    "Paris is the capital of France.",
    "The Great Wall of China was built over many centuries.",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint folder")
    group.add_argument("--tiny", action="store_true", help="use a tiny random model (offline)")
    parser.add_argument("--top-n", type=int, default=3, help="nodes to keep after reranking")
    args = parser.parse_args()

    model = args.model
    if args.tiny:
        from qwen_rerank.testing import make_tiny_reranker

        model = str(make_tiny_reranker())
        print("Using a tiny random model: the scores below carry no meaning.\n")

    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(TEXTS)],
        embed_model=MockEmbedding(embed_dim=8),
    )
    print(f"Query: {QUERY}\n\nBefore (vector index, top {len(TEXTS)}; mock embeddings score all alike):")
    for rank, node in enumerate(index.as_retriever(similarity_top_k=len(TEXTS)).retrieve(QUERY), start=1):
        print(f"{rank}. {node.score:.4f}  {node.node.get_content()}")

    # The whole integration: one postprocessor in the query engine you already have.
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=len(TEXTS),
        node_postprocessors=[QwenRerank(model=model, top_n=args.top_n)],
    )
    response = engine.query(QUERY)
    print(f"\nAfter (QwenRerank, top {args.top_n}), as the LLM receives them:")
    for rank, node in enumerate(response.source_nodes, start=1):
        print(f"{rank}. {node.score:.4f}  {node.node.get_content()}")


if __name__ == "__main__":
    main()
