"""LangChain integration of qwen-rerank: ``QwenRerank`` (a document compressor) and ``QwenCrossEncoder``.

<!-- not run by the tests: vector_store is your LangChain vector store -->
```python
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_qwen_rerank import QwenRerank
retriever = ContextualCompressionRetriever(
    base_compressor=QwenRerank(top_n=5), base_retriever=vector_store.as_retriever()
)
```

Install with ``pip install "qwen-rerank[langchain,local]"`` (or ``[langchain]``
alone to use a vLLM server through ``base_url``).
"""

from __future__ import annotations

from langchain_qwen_rerank.compressor import QwenRerank
from langchain_qwen_rerank.cross_encoder import QwenCrossEncoder

__all__ = ["QwenCrossEncoder", "QwenRerank"]
