"""Metadata copying: what an adapter puts on the new documents it returns, never on the caller's."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from qwen_rerank.results import RerankResult


def copy_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``metadata``; a value that cannot be deep-copied (a lock, a client) is shared.

    Never raises for an unusual value, so no adapter fails after the model
    has done its work.
    """
    try:
        return dict(copy.deepcopy(dict(metadata)))
    except Exception:  # any value may refuse to be copied, in any way
        copied: dict[str, Any] = {}
        for key, value in metadata.items():
            try:
                copied[key] = copy.deepcopy(value)
            except Exception:
                copied[key] = value
        return copied


RERANK_KEYS = frozenset(
    {"relevance_score", "rerank_usage", "truncated", "best_span", "reranked", "rerank_error"}
)
"""The metadata keys the adapters write about one rerank call: each call replaces all of them."""


def result_metadata(metadata: Mapping[str, Any], result: RerankResult, **added: Any) -> dict[str, Any]:
    """A copy of ``metadata`` that describes ``result`` only: no key an earlier rerank wrote survives.

    Every key of `RERANK_KEYS` is dropped, then `cut_metadata` (reranked) or
    ``{"reranked": False, "rerank_error": ...}`` (not reranked, ``on_error="passthrough"``)
    is added, then ``added`` (such as LangChain's ``relevance_score``), for a reranked result only.
    """
    fresh = copy_metadata({key: value for key, value in metadata.items() if key not in RERANK_KEYS})
    if not result.reranked:
        fresh.update(reranked=False, rerank_error=result.error)
        return fresh
    fresh.update(cut_metadata(result))
    fresh.update(added)
    return fresh


def cut_metadata(result: RerankResult) -> dict[str, Any]:
    """The metadata keys an adapter adds about what the model read of a document.

    ``truncated``: the document's tail was cut to fit ``max_length``;
    ``best_span``: in chunk mode, ``[start, end]`` character offsets of the best
    window, ``None`` when the document was scored whole.
    """
    return {"truncated": result.truncated, "best_span": None if result.span is None else list(result.span)}
