"""LlamaIndex integration of qwen-rerank: ``QwenRerank``, a node postprocessor.

<!-- not run by the tests: index is your VectorStoreIndex -->
```python
from llamaindex_qwen_rerank import QwenRerank
engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[QwenRerank(top_n=5)])
```

Install with ``pip install "qwen-rerank[llamaindex,local]"`` (or ``[llamaindex]``
alone to use a vLLM server through ``base_url``).
"""

from __future__ import annotations

from llamaindex_qwen_rerank.postprocessor import QwenRerank

__all__ = ["QwenRerank"]
