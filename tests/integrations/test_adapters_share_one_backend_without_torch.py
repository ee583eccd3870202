"""What the LangChain and LlamaIndex adapters share: no torch on the remote path, one backend for both."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from langchain_qwen_rerank import QwenRerank as LangChainRerank
from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank
from qwen_rerank import Reranker
from qwen_rerank.integrations.adapters import LazyReranker

QUERY = "What is the capital of China?"
TEXTS = ["Paris is the capital of France.", "The capital of China is Beijing.", "Gravity pulls."]


def test_base_url_never_imports_torch(fake_vllm: Any) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from langchain_core.documents import Document
        from llama_index.core.schema import NodeWithScore, TextNode
        from langchain_qwen_rerank import QwenRerank as LangChainRerank
        from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank

        url = {fake_vllm.url!r}
        texts = {TEXTS!r}
        docs = LangChainRerank(base_url=url).compress_documents(
            [Document(page_content=t) for t in texts], "q"
        )
        nodes = LlamaIndexRerank(base_url=url).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in texts], query_str="q"
        )
        assert len(docs) == len(nodes) == 3
        loaded = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert len(fake_vllm.rerank_requests) == 2  # both calls really went over HTTP


def test_one_loaded_model_serves_both_frameworks(tiny_reranker: Reranker) -> None:
    langchain = LangChainRerank(reranker=tiny_reranker, top_n=None)
    llamaindex = LlamaIndexRerank(reranker=tiny_reranker, top_n=None)
    docs = langchain.compress_documents(
        [Document(page_content=t, id=str(i)) for i, t in enumerate(TEXTS)], QUERY
    )
    nodes = llamaindex.postprocess_nodes(
        [NodeWithScore(node=TextNode(id_=str(i), text=t)) for i, t in enumerate(TEXTS)], query_str=QUERY
    )
    assert [(d.id, d.metadata["relevance_score"]) for d in docs] == [(n.node.node_id, n.score) for n in nodes]
    assert langchain._backend.get() is llamaindex._backend.get() is tiny_reranker


def test_lazy_backend_is_built_once_when_threads_race(tiny_reranker: Reranker) -> None:
    builds: list[int] = []

    def build() -> Reranker:
        builds.append(threading.get_ident())
        time.sleep(0.2)  # a slow load, so that every thread arrives while it runs
        return tiny_reranker

    lazy = LazyReranker(build)
    assert not lazy.built
    got: list[Reranker] = []
    threads = [threading.Thread(target=lambda: got.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(got) == 8 and all(r is tiny_reranker for r in got)


async def test_lazy_backend_builds_off_the_event_loop(tiny_reranker: Reranker) -> None:
    ticks: list[float] = []

    def build() -> Reranker:
        time.sleep(0.3)
        return tiny_reranker

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    lazy = LazyReranker(build)
    reranker, _ = await asyncio.gather(lazy.aget(), ticker())
    assert reranker is tiny_reranker
    assert len(ticks) == 5 and ticks[-1] - ticks[0] < 0.3  # the loop kept running during the build
