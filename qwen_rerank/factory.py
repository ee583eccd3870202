"""One way to build a backend from plain settings, and the one table of which setting goes where.

The adapters, the CLI and the demo all build their backend here, and ask
[`backend_for`][qwen_rerank.factory.backend_for],
[`options_for`][qwen_rerank.factory.options_for] and
[`check_backend_options`][qwen_rerank.factory.check_backend_options] which of
their settings a backend takes, so the rule is written once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote import HOSTED_API_NAMES

__all__ = [
    "LOCAL_ONLY",
    "REMOTE_ONLY",
    "Backend",
    "backend_for",
    "check_backend_options",
    "create_reranker",
    "misplaced_options",
    "options_for",
]

Backend = Literal["local", "remote"]
"""``"local"``: [`LocalReranker`][qwen_rerank.LocalReranker]; ``"remote"``:
[`RemoteReranker`][qwen_rerank.RemoteReranker]."""

LOCAL_ONLY: frozenset[str] = frozenset(
    {
        "device",
        "dtype",
        "compile",
        "revision",
        "trust_remote_code",
        "max_batch_tokens",
        "prefix_reuse",
        "cache_size",
        "show_progress",
        "allow_urls",
    }
)
"""Settings only the local backend takes: where and how the model runs in this process."""

REMOTE_ONLY: frozenset[str] = frozenset(
    {
        "api_key",
        "template",
        "tokenizer",
        "timeout",
        "deadline",
        "max_retries",
        "retry_backoff",
        "max_retry_wait",
        "max_concurrency",
        "max_documents_per_request",
        "max_tokens_per_doc",
        "max_response_bytes",
        "http_client",
        "async_http_client",
        "api",
        "region",
        "allow_http",
        "price_per_million_tokens",
        "multimodal",
    }
)
"""Settings only the remote backend takes: how the server is reached and spoken to."""

_DESCRIBED: dict[str, str] = {"local": "the local backend", "remote": "the remote vLLM backend"}


def backend_for(base_url: str | Sequence[str] | None, api: Any = None) -> Backend:
    """``"remote"`` for a server URL (or a list of replicas) or a hosted ``api``, else ``"local"``."""
    return "local" if base_url is None and api not in HOSTED_API_NAMES else "remote"


def misplaced_options(names: Iterable[str], backend: Backend) -> list[str]:
    """The ``names`` that only the other backend takes, in their order."""
    other_only = REMOTE_ONLY if backend == "local" else LOCAL_ONLY
    return [name for name in names if name in other_only]


def options_for(backend: Backend, options: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict of the ``options`` that ``backend`` takes: all but the other backend's own."""
    wrong = set(misplaced_options(options, backend))
    return {name: value for name, value in options.items() if name not in wrong}


def check_backend_options(names: Iterable[str], backend: Backend) -> None:
    """Refuse settings that only the other backend takes.

    Args:
        names: The names of the settings given.
        backend: The backend they are for.

    Raises:
        InvalidInputError: A setting belongs to the other backend; the message
            names it, names its backend and says how to choose that one.
    """
    misplaced = misplaced_options(names, backend)
    if not misplaced:
        return
    listed = ", ".join(misplaced)
    if backend == "local":
        raise InvalidInputError(
            f"Settings for the remote vLLM backend only ({listed}) were given without base_url; "
            "set base_url to use a server, or drop them."
        )
    raise InvalidInputError(
        f"Settings for the local backend only ({listed}) were given with base_url, which "
        "selects the remote vLLM backend; drop them, or drop base_url to run the model here."
    )


def create_reranker(
    model: str | os.PathLike[str] | None = None,
    *,
    base_url: str | Sequence[str] | None = None,
    instruction: str | None = None,
    **options: Any,
) -> Reranker:
    """A [`RemoteReranker`][qwen_rerank.RemoteReranker] for ``base_url`` or a hosted ``api``, else local.

    ``model`` is the checkpoint to load locally (default: Qwen3-Reranker-0.6B),
    or, with ``base_url``, the model name to ask the server for (default: the
    server's; a hosted API's default model with ``api="dashscope"``, ``"siliconflow"``
    or ``"deepinfra"``). A local folder may be a ``str`` or any ``os.PathLike``. Other
    keyword arguments go to the backend's constructor. Building a remote
    backend never imports torch.

    Raises:
        InvalidInputError: ``model`` is a URL (the message points to
            ``base_url``), or an option belongs to the other backend
            (``device`` with ``base_url``, ``timeout`` without it).
        TypeError: An option neither backend knows (the message names it).
    """
    backend = backend_for(base_url, options.get("api"))
    check_backend_options(options, backend)
    if backend == "remote":
        from qwen_rerank.remote import RemoteReranker, VLLMReranker

        name = os.fspath(model) if isinstance(model, os.PathLike) else model
        # A server you run keeps the class existing code checks for; a hosted API gets the new name.
        remote = RemoteReranker if options.get("api") in HOSTED_API_NAMES else VLLMReranker
        return remote(base_url, model=name, instruction=instruction, **options)
    from qwen_rerank.local import LocalReranker
    from qwen_rerank.prompt import DEFAULT_MODEL

    return LocalReranker(model or DEFAULT_MODEL, instruction=instruction, **options)
