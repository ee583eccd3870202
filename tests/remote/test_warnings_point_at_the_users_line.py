"""A warning of ours names the user's line, however deep in the library it was raised.

`create_reranker` and the framework adapters build the reranker a few calls down; the
warning must still point at the caller's file, not at `factory.py` or an adapter.
"""

from __future__ import annotations

import pytest

from qwen_rerank import QwenRerankWarning, create_reranker


def test_through_create_reranker(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(QwenRerankWarning, match="server_template_path") as caught:
        reranker = create_reranker(base_url=fake_vllm.url, template="server")
    reranker.close()
    assert [w.filename for w in caught] == [__file__]


def test_through_the_haystack_component(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("haystack")
    from haystack import Document

    from haystack_qwen_rerank import QwenRanker

    with pytest.warns(QwenRerankWarning, match="server_template_path") as caught:
        ranker = QwenRanker(base_url=fake_vllm.url, backend_options={"template": "server"})
        ranker.run(query="a question", documents=[Document(content="an answer")])
    ranker.close()
    assert [w.filename for w in caught] == [__file__]


def test_through_the_langchain_compressor(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from langchain_qwen_rerank import QwenRerank

    with pytest.warns(QwenRerankWarning, match="server_template_path") as caught:
        compressor = QwenRerank(base_url=fake_vllm.url, backend_options={"template": "server"})
        compressor.compress_documents([Document(page_content="an answer")], "a question")
    compressor.close()
    assert [w.filename for w in caught] == [__file__]
