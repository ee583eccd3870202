"""What a call reports for tracing: the tokens a server counted, and the model that scored."""

from __future__ import annotations

from qwen_rerank.base import Reranker


def usage_of(backend: Reranker) -> dict[str, int | None] | None:
    """The tokens the server reported for the backend's last call in this thread or task.

    ``{"prompt_tokens": ..., "total_tokens": ...}`` from
    [`Reranker.last_usage`][qwen_rerank.Reranker.last_usage]; ``None`` when the
    backend has none to tell (a local one). Read it right after the call.
    """
    usage = backend.last_usage
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}


def served_model(reranker: Reranker) -> str:
    """The model a backend scores with, as tracing events report it.

    [`Reranker.served_model`][qwen_rerank.Reranker.served_model], or the
    backend's class name when it does not say.
    """
    return reranker.served_model or type(reranker).__name__
