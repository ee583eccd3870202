"""One rule for an empty or whitespace-only query, which has no meaning to the model: it is refused.

The Python API (every method, sync and async), the three adapters and the command line refuse it
with our error, before anything is scored; the demo page and ``eval`` have their own tests
(``tests/demo``, ``tests/cli/test_evaluation_data_and_metrics.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import InvalidInputError
from qwen_rerank.cli import main
from tests.helpers import LengthReranker

EMPTY = ["", "   ", "\n\t "]
CALLS = {
    "score": lambda r, q: r.score(q, ["a document"]),
    "rerank": lambda r, q: r.rerank(q, ["a document"]),
    "ascore": lambda r, q: asyncio.run(r.ascore(q, ["a document"])),
    "arerank": lambda r, q: asyncio.run(r.arerank(q, ["a document"])),
    "score_many": lambda r, q: r.score_many([("a fine query", ["a"]), (q, ["b"])]),
    "rerank_many": lambda r, q: r.rerank_many([(q, [])]),
    "score_pairs": lambda r, q: r.score_pairs([("a fine query", "a"), (q, "b")]),
}


@pytest.mark.parametrize("query", EMPTY)
@pytest.mark.parametrize("method", sorted(CALLS))
def test_the_python_api_refuses_an_empty_query(method: str, query: str) -> None:
    backend = LengthReranker()
    with pytest.raises(InvalidInputError, match="query is empty"):
        CALLS[method](backend, query)
    assert backend.calls == []  # nothing was scored, not even the fine query


def _langchain(backend: LengthReranker, query: str) -> Any:
    from langchain_core.documents import Document

    from langchain_qwen_rerank import QwenRerank

    return QwenRerank(reranker=backend).compress_documents([Document("a document")], query)


def _llamaindex(backend: LengthReranker, query: str) -> Any:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_qwen_rerank import QwenRerank

    nodes = [NodeWithScore(node=TextNode(text="a document"))]
    return QwenRerank(reranker=backend).postprocess_nodes(nodes, query_str=query)


def _haystack(backend: LengthReranker, query: str) -> Any:
    from haystack import Document

    from haystack_qwen_rerank import QwenRanker

    return QwenRanker(reranker=backend).run(query=query, documents=[Document(content="a document")])


@pytest.mark.parametrize("query", ["", "  "])
@pytest.mark.parametrize(
    ("framework", "adapter"),
    [("langchain_core", _langchain), ("llama_index.core", _llamaindex), ("haystack", _haystack)],
)
def test_the_adapters_refuse_an_empty_query(framework: str, adapter: Any, query: str) -> None:
    pytest.importorskip(framework)
    backend = LengthReranker()
    with pytest.raises(InvalidInputError, match="query is empty"):
        adapter(backend, query)
    assert backend.calls == []


@pytest.mark.parametrize("query", ["", " \t"])
def test_rank_refuses_an_empty_query_before_loading_a_model(query: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs.txt"
    docs.write_text("Beijing is the capital.\n", encoding="utf-8")
    missing_model = str(tmp_path / "no-such-checkpoint")  # loading it would fail with status 1
    assert main(["rank", "--model", missing_model, "--query", query, str(docs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qwen-rerank: error: --query is empty") and err.count("\n") == 1, err
