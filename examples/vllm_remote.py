"""Rerank through a vLLM server: the LangChain and LlamaIndex integrations with ``base_url``.

Start the server (on a GPU machine) with exactly:

    vllm serve Qwen/Qwen3-Reranker-0.6B --runner pooling --hf_overrides '{"architectures":["Qwen3ForSequenceClassification"],"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}'

then run, from any machine that reaches it (no torch needed here):

    python examples/vllm_remote.py --base-url http://GPU_HOST:8000

Without ``--chat-template`` the server scores the plain text it receives, so the
client wraps query and documents in the Qwen3-Reranker prompt itself (the
default). If you started vLLM with ``--chat-template`` (use qwen-rerank's template,
``qwen_rerank.prompt.server_template_path()``; the one vLLM ships scores wrong), pass
``--server-template`` so the prompt is not wrapped twice. A server started
with ``--api-key`` needs ``QWEN_RERANK_API_KEY`` set here.

No GPU at hand? ``python examples/vllm_remote.py --tiny`` starts the fake vLLM server
from ``qwen_rerank.testing`` on loopback, scoring with a tiny random model (built once,
offline and cached), and runs against it: the same HTTP, meaningless scores.
"""  # noqa: E501 - the serve command is quoted exactly, on one line

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_qwen_rerank import QwenRerank as LangChainQwenRerank
from llamaindex_qwen_rerank import QwenRerank as LlamaIndexQwenRerank

QUERY = "What is the capital of China?"
TEXTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "China is a country in East Asia with a population of over 1.4 billion.",
    "Paris is the capital of France.",
    "The Great Wall of China was built over many centuries.",
]


@contextlib.contextmanager
def tiny_server(model_path: str) -> Iterator[str]:
    """A fake vLLM server on loopback scoring with the tiny random model; yields its URL."""
    from qwen_rerank.testing import FakeVLLMServer, make_tiny_reranker

    if not model_path:
        model_path = str(make_tiny_reranker())  # built once, then cached
    with FakeVLLMServer(model_path) as server:
        yield server.url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default="http://localhost:8000", help="the vLLM server")
    parser.add_argument("--model", help="model name to ask the server for (default: the one it serves)")
    parser.add_argument("--server-template", action="store_true", help="vLLM runs with --chat-template")
    parser.add_argument("--top-n", type=int, default=3, help="documents to keep after reranking")
    parser.add_argument(
        "--tiny",
        nargs="?",
        const="",
        metavar="MODEL_DIR",
        help="run offline against a fake vLLM server on a tiny random model (built if no folder is given)",
    )
    args = parser.parse_args()
    if args.tiny is None:
        run(args, args.base_url)
    else:
        with tiny_server(args.tiny) as url:
            run(args, url)


def run(args: argparse.Namespace, base_url: str) -> None:
    settings: dict[str, Any] = {"base_url": base_url, "top_n": args.top_n}
    if args.model:
        settings["model"] = args.model
    if args.server_template:
        settings["backend_options"] = {"template": "server"}

    print(f"Query: {QUERY}\n\nBefore (as retrieved):")
    for rank, text in enumerate(TEXTS, start=1):
        print(f"{rank}. {text}")

    # LangChain: any retriever (here a fixed list) wrapped in a ContextualCompressionRetriever.
    documents = [Document(page_content=t, id=f"doc-{i}") for i, t in enumerate(TEXTS)]
    retriever = ContextualCompressionRetriever(
        base_compressor=LangChainQwenRerank(**settings),
        base_retriever=RunnableLambda(lambda query: documents),
    )
    print(f"\nAfter, LangChain (top {args.top_n}):")
    for rank, doc in enumerate(retriever.invoke(QUERY), start=1):
        print(f"{rank}. {doc.metadata['relevance_score']:.4f}  {doc.page_content}")

    # LlamaIndex: the node postprocessor, here called directly and asynchronously.
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"doc-{i}"), score=None) for i, t in enumerate(TEXTS)]
    postprocessor = LlamaIndexQwenRerank(**settings)
    reranked = asyncio.run(postprocessor.apostprocess_nodes(nodes, query_str=QUERY))
    print(f"\nAfter, LlamaIndex async (top {args.top_n}):")
    for rank, node in enumerate(reranked, start=1):
        print(f"{rank}. {node.score:.4f}  {node.node.get_content()}")


if __name__ == "__main__":
    main()
