"""One way to build a backend from plain settings, shared by the adapters, the CLI and the demo."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from qwen_rerank.base import Reranker

__all__ = ["create_reranker"]


def create_reranker(
    model: str | os.PathLike[str] | None = None,
    *,
    base_url: str | Sequence[str] | None = None,
    instruction: str | None = None,
    **options: Any,
) -> Reranker:
    """A [`VLLMReranker`][qwen_rerank.VLLMReranker] when ``base_url`` is given, else a
    [`LocalReranker`][qwen_rerank.LocalReranker].

    ``model`` is the checkpoint to load locally (default: Qwen3-Reranker-0.6B),
    or, with ``base_url``, the model name to ask the server for (default: the
    server's). A local folder may be a ``str`` or any ``os.PathLike``. A URL
    as ``model`` raises [`InvalidInputError`][qwen_rerank.exceptions.InvalidInputError] pointing to
    ``base_url``. Other keyword arguments go to the backend's constructor, so a
    setting the backend does not know raises ``TypeError`` naming it. Building
    a remote backend never imports torch.
    """
    if base_url is not None:
        from qwen_rerank.remote import VLLMReranker

        name = os.fspath(model) if isinstance(model, os.PathLike) else model
        return VLLMReranker(base_url, model=name, instruction=instruction, **options)
    from qwen_rerank.local import LocalReranker
    from qwen_rerank.prompt import DEFAULT_MODEL

    return LocalReranker(model or DEFAULT_MODEL, instruction=instruction, **options)
