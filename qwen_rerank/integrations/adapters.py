"""Framework-free logic shared by the LangChain, LlamaIndex and Haystack adapters, written once.

A public base for adapter authors. An adapter declares its settings the way
its ecosystem expects and delegates everything else here:

- the backend: [`adapter_backend`][qwen_rerank.integrations.adapters.adapter_backend]
  checks the settings (which backend takes which is asked of
  [`qwen_rerank.factory`][qwen_rerank.factory]) and returns a
  [`LazyReranker`][qwen_rerank.integrations.adapters.LazyReranker], built once on
  first use, rebuilt by [`current_backend`][qwen_rerank.integrations.adapters.current_backend]
  when a backend setting changes, released by ``close()``;
- inputs and outputs: documents or nodes turned into text with errors that name
  the position ([`rerank_inputs`][qwen_rerank.integrations.adapters.rerank_inputs]),
  metadata copied safely, the ``truncated``/``best_span`` keys, and each call's keys written
  afresh ([`result_metadata`][qwen_rerank.integrations.adapters.result_metadata]);
- secrets: URLs shown without credentials, ``backend_options`` never holding a
  key, a URL sealed ([`Sealed`][qwen_rerank.integrations.adapters.Sealed], as
  [`seal_base_url`][qwen_rerank.integrations.adapters.seal_base_url] does to an
  adapter's pickled fields) so that no text form of a pickled state shows it;
- tracing: the served model and the token usage of the last call.

Each concern has a module of its own inside this package (the backend's settings, its lazy
lifecycle, inputs, metadata, secrets, usage, error mapping); this module is their public face,
and adapters import these names from here. Scoring pairs grouped by query is the core's
[`Reranker.score_pairs`][qwen_rerank.Reranker.score_pairs]. Nothing here imports
a framework.
"""

from __future__ import annotations

from qwen_rerank.integrations._errors import invalid_input_in
from qwen_rerank.integrations._inputs import ItemMedia, rerank_inputs, text_with_metadata, with_media
from qwen_rerank.integrations._lazy import LazyReranker
from qwen_rerank.integrations._metadata import RERANK_KEYS, copy_metadata, cut_metadata, result_metadata
from qwen_rerank.integrations._sealed import (
    Sealed,
    api_key_from_env,
    public_options,
    redact_urls,
    seal_base_url,
    unseal_base_url,
)
from qwen_rerank.integrations._settings import (
    BACKEND_FIELDS,
    adapter_backend,
    backend_snapshot,
    build_backend,
    check_call_settings,
    current_backend,
    model_name,
)
from qwen_rerank.integrations._usage import served_model, usage_of
from qwen_rerank.remote import API_KEY_ENV

__all__ = [
    "API_KEY_ENV",
    "BACKEND_FIELDS",
    "RERANK_KEYS",
    "ItemMedia",
    "LazyReranker",
    "Sealed",
    "adapter_backend",
    "api_key_from_env",
    "backend_snapshot",
    "build_backend",
    "check_call_settings",
    "copy_metadata",
    "current_backend",
    "cut_metadata",
    "invalid_input_in",
    "model_name",
    "public_options",
    "redact_urls",
    "rerank_inputs",
    "result_metadata",
    "seal_base_url",
    "served_model",
    "text_with_metadata",
    "unseal_base_url",
    "usage_of",
    "with_media",
]
