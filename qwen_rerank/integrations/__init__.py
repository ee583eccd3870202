"""What qwen-rerank offers adapter authors, and the integrations that need no framework package.

The modules listed below are public; the LangChain, LlamaIndex and Haystack adapters are built on
their names only, and an adapter to another framework can be too. The private ``_*`` modules hold
one concern each of what `adapters` offers, and are imported through it.

- [`qwen_rerank.integrations.adapters`][]: framework-free helpers every adapter shares: the
  backend built lazily from settings (and rebuilt when one changes), text from documents,
  metadata copies, secrets kept out of every text form, usage and model for tracing.
- `qwen_rerank.integrations.fallback`: ``on_error`` for adapters: `RerankCall` holds a call's
  backend, or the failure that kept it from being built, and reranks either way.
- [`qwen_rerank.integrations.fields`][]: the shared pydantic fields and their rebuild rules
  (LangChain and LlamaIndex adapters).
- [`qwen_rerank.integrations.mteb`][]: an MTEB cross-encoder.
- [`qwen_rerank.integrations.ray`][]: a Ray Data predictor.

Which setting goes to which backend is [`qwen_rerank.factory`][]'s to say; scoring
(query, document) pairs grouped by query is [`Reranker.score_pairs`][qwen_rerank.Reranker.score_pairs].
Submodules are imported on use, so importing this package imports no framework.
"""

__all__: list[str] = []
