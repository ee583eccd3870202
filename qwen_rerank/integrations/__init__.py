"""What qwen-rerank offers adapter authors, and the integrations that need no framework package.

- [`qwen_rerank.integrations.adapters`][]: framework-free helpers every adapter shares: the
  backend built lazily from settings, text from documents, metadata copies, pairs scored by query.
- [`qwen_rerank.integrations.fields`][]: the shared pydantic fields and their rebuild rules
  (LangChain and LlamaIndex adapters).
- [`qwen_rerank.integrations.mteb`][]: an MTEB cross-encoder.
- [`qwen_rerank.integrations.ray`][]: a Ray Data predictor.
"""
