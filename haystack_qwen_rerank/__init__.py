"""Haystack integration of qwen-rerank: ``QwenRanker``, a ranker component.

<!-- not run by the tests: pipeline is your Haystack Pipeline, with a retriever -->
```python
from haystack_qwen_rerank import QwenRanker
pipeline.add_component("ranker", QwenRanker(top_k=5))
pipeline.connect("retriever.documents", "ranker.documents")
```

Install with ``pip install "qwen-rerank[haystack,local]"`` (or ``[haystack]``
alone to use a vLLM server through ``base_url``).
"""

from __future__ import annotations

from haystack_qwen_rerank.ranker import QwenRanker

__all__ = ["QwenRanker"]
