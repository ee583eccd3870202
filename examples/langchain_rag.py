"""Rerank a LangChain retriever's results with Qwen3-Reranker.

    python examples/langchain_rag.py                      # Qwen/Qwen3-Reranker-0.6B (downloads once)
    python examples/langchain_rag.py --model PATH_OR_ID   # any Qwen3-Reranker checkpoint
    python examples/langchain_rag.py --tiny               # offline: a tiny random model (cached)

An in-memory vector store retrieves candidates, and a ContextualCompressionRetriever
reorders them with QwenRerank. The embeddings here are a crude word-hashing
stand-in, so the example needs no embedding model: put yours in their place.
The tiny model's weights are random, so its ranking means nothing; it exercises
the real code path with no download.
"""

from __future__ import annotations

import argparse
import re
import zlib

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_qwen_rerank import QwenRerank
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


class WordHashEmbeddings(Embeddings):
    """Bag-of-words vectors (each word hashed to a slot): a stand-in for a real embedding model."""

    def __init__(self, size: int = 256) -> None:
        self.size = size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * self.size
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.size] += 1.0
        return vector


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

        model = str(make_tiny_reranker())
        print("Using a tiny random model: the scores below carry no meaning.\n")

    store = InMemoryVectorStore(WordHashEmbeddings())
    store.add_documents([Document(page_content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)])
    retriever = store.as_retriever(search_kwargs={"k": 6})

    print(f"Query: {QUERY}\n\nBefore (vector store, top 6):")
    for rank, (doc, similarity) in enumerate(store.similarity_search_with_score(QUERY, k=6), start=1):
        print(f"{rank}. {similarity:.4f}  {doc.page_content}")

    # The whole integration: one compressor around the retriever you already have.
    reranking = ContextualCompressionRetriever(
        base_compressor=QwenRerank(model=model, top_n=args.top_n), base_retriever=retriever
    )
    print(f"\nAfter (QwenRerank, top {args.top_n}):")
    for rank, doc in enumerate(reranking.invoke(QUERY), start=1):
        print(f"{rank}. {doc.metadata['relevance_score']:.4f}  {doc.page_content}")


if __name__ == "__main__":
    main()
