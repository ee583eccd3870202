"""Token usage and long documents through the adapters: what the core reports reaches the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from haystack import Document as HaystackDocument
from langchain_core.documents import Document
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.schema import NodeWithScore, TextNode

from haystack_qwen_rerank import QwenRanker
from langchain_qwen_rerank import QwenRerank as LangChainRerank
from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank
from qwen_rerank import LocalReranker

QUERY = "What is the capital of China?"
TEXTS = ["Paris is the capital of France.", "The capital of China is Beijing.", "Gravity pulls."]
# Long enough to be cut at max_length=80: the relevant sentence comes last.
LONG = "Gravity pulls apples down. " * 30 + "Beijing is the capital of China."


class _Ends(BaseCallbackHandler):
    """Keeps the end payloads of RERANKING events."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.payloads: list[dict[str, Any]] = []

    def on_event_start(
        self, event_type: CBEventType, payload: Any = None, event_id: str = "", **_: Any
    ) -> str:
        return event_id

    def on_event_end(
        self, event_type: CBEventType, payload: Any = None, event_id: str = "", **_: Any
    ) -> None:
        if event_type == CBEventType.RERANKING:
            self.payloads.append(dict(payload or {}))

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: Any = None) -> None:
        return None


def test_langchain_documents_carry_the_servers_token_usage(fake_vllm: Any, tiny_model_path: Path) -> None:
    remote = LangChainRerank(base_url=fake_vllm.url, top_n=None)
    docs = remote.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    usage = docs[0].metadata["rerank_usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"]
    assert all(d.metadata["rerank_usage"] == usage for d in docs)
    local = LangChainRerank(model=tiny_model_path, device="cpu", top_n=None)
    assert all(
        "rerank_usage" not in d.metadata
        for d in local.compress_documents([Document(page_content="x")], QUERY)
    )


async def test_langchain_async_usage_is_the_calls_own(fake_vllm: Any) -> None:
    remote = LangChainRerank(base_url=fake_vllm.url, top_n=None)
    one = await remote.acompress_documents([Document(page_content=TEXTS[0])], QUERY)
    three = await remote.acompress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    assert (
        three[0].metadata["rerank_usage"]["prompt_tokens"] > one[0].metadata["rerank_usage"]["prompt_tokens"]
    )


async def test_llamaindex_reranking_event_carries_usage(fake_vllm: Any, mode: str) -> None:
    ends = _Ends()
    remote = LlamaIndexRerank(base_url=fake_vllm.url, top_n=2, callback_manager=CallbackManager([ends]))
    nodes = [NodeWithScore(node=TextNode(text=t)) for t in TEXTS]
    if mode == "sync":
        remote.postprocess_nodes(nodes, query_str=QUERY)
    else:
        await remote.apostprocess_nodes(nodes, query_str=QUERY)
    (payload,) = ends.payloads
    assert payload["usage"]["prompt_tokens"] > 0


def test_llamaindex_local_usage_is_none(tiny_reranker: LocalReranker) -> None:
    ends = _Ends()
    local = LlamaIndexRerank(reranker=tiny_reranker, callback_manager=CallbackManager([ends]))
    local.postprocess_nodes([NodeWithScore(node=TextNode(text=TEXTS[0]))], query_str=QUERY)
    assert ends.payloads[0]["usage"] is None


def _chunk_and_truncate(adapter_class: Any, tiny_model_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metadata of LONG reranked in chunk mode and in truncate mode, by one adapter."""
    out = []
    for mode in ("chunk", "truncate"):
        common = {"model": tiny_model_path, "device": "cpu", "max_length": 80, "long_documents": mode}
        if adapter_class is LangChainRerank:
            (doc,) = LangChainRerank(**common).compress_documents([Document(page_content=LONG)], QUERY)
            out.append({**doc.metadata, "score": doc.metadata["relevance_score"]})
        elif adapter_class is LlamaIndexRerank:
            (node,) = LlamaIndexRerank(**common).postprocess_nodes(
                [NodeWithScore(node=TextNode(text=LONG))], query_str=QUERY
            )
            out.append({**node.node.metadata, "score": node.score})
        else:
            (hdoc,) = QwenRanker(**common).run(QUERY, [HaystackDocument(content=LONG)])["documents"]
            out.append({**hdoc.meta, "score": hdoc.score})
    return out[0], out[1]


@pytest.mark.parametrize("adapter_class", [LangChainRerank, LlamaIndexRerank, QwenRanker])
def test_adapters_take_long_documents(adapter_class: Any, tiny_model_path: Path) -> None:
    chunked, truncated = _chunk_and_truncate(adapter_class, tiny_model_path)
    assert truncated["truncated"] is True and truncated["best_span"] is None
    start, end = chunked["best_span"]
    assert 0 <= start < end <= len(LONG)
    assert chunked["score"] >= truncated["score"] - 1e-6  # the first window is the truncated document


def test_haystack_long_documents_round_trips(tiny_model_path: Path) -> None:
    ranker = QwenRanker(model=tiny_model_path, long_documents="chunk")
    again = QwenRanker.from_dict(ranker.to_dict())
    assert again.long_documents == "chunk"
