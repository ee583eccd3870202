"""An adapter's backend from its settings: checked, built (now or on first use), rebuilt on a change."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qwen_rerank._validation import check_instruction, check_score_threshold, check_top_n
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import backend_for, check_backend_options, create_reranker
from qwen_rerank.integrations._lazy import LazyReranker
from qwen_rerank.integrations._sealed import api_key_from_env, check_options_hold_no_secret
from qwen_rerank.remote import HOSTED_API_NAMES


def check_call_settings(
    top_n: Any, score_threshold: Any, instruction: Any, *, top_n_name: str = "top_n"
) -> None:
    """Check the per-call settings an adapter stores, raising InvalidInputError.

    ``top_n_name`` is what the adapter calls ``top_n`` (Haystack: ``top_k``), so the message names it.
    """
    check_top_n(top_n, top_n_name)
    check_score_threshold(score_threshold)
    check_instruction(instruction, "")


def model_name(model: Any) -> str | None:
    """An adapter's ``model`` setting as the core takes it: a str (a path is made one), or None.

    Raises:
        InvalidInputError: ``model`` is neither None, a non-empty str nor an os.PathLike.
    """
    if model is None:
        return None
    name = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(name, str) or not name:
        raise InvalidInputError(
            f"model must be a hub id, a local folder (str or pathlib.Path) or None, got {model!r}."
        )
    return name


def adapter_backend(
    *,
    reranker: Reranker | None,
    model: Any,
    base_url: str | Sequence[str] | None,
    settings: Mapping[str, Any],
    options: Mapping[str, Any],
) -> LazyReranker:
    """An adapter's backend, from its settings: checked now, built now or on first use.

    A remote backend is built at once (that does no I/O), so a bad setting fails
    when the adapter is constructed; a local one is built on first use, since
    loading a model takes seconds. ``model=None`` means the default checkpoint
    locally ([`DEFAULT_MODEL`][qwen_rerank.DEFAULT_MODEL]) and, with ``base_url``, no
    model name sent, so the server uses whatever model it serves.

    Args:
        reranker: A ready backend; no other backend setting may be given with it.
        model: The adapter's ``model`` setting.
        base_url: The adapter's ``base_url`` setting; it selects the backend.
        settings: The adapter's named pass-through fields (``device``,
            ``api_key``...); those left at ``None`` are not passed on.
        options: Any further keyword arguments for the backend's constructor.

    Returns:
        The backend, built lazily.

    Raises:
        InvalidInputError: ``reranker`` is combined with backend settings, a
            setting belongs to the other backend (``device`` with ``base_url``,
            ``timeout`` without it), ``options`` holds a secret (``api_key``)
            that has its own field, or the remote backend rejects a value.
        TypeError: ``options`` holds a keyword the remote backend does not take
            (for the local backend, on first use).
    """
    given = {name: value for name, value in settings.items() if value is not None}
    check_options_hold_no_secret(options)
    if reranker is not None:
        _check_nothing_beside(given, options, model=model, base_url=base_url)
        return LazyReranker(functools.partial(_ready, reranker), eager=True, owned=False)
    api = options.get("api")
    backend = backend_for(base_url, api)
    if backend == "local" or (api in HOSTED_API_NAMES and given.get("api_key") == api_key_from_env()):
        # An API key means nothing locally, and may have come from the environment unasked; the
        # QWEN_RERANK_API_KEY of your own servers is never sent to a hosted API, which reads its own.
        given.pop("api_key", None)
    check_backend_options(given, backend)
    build = functools.partial(create_reranker, model_name(model), base_url=base_url, **given, **options)
    return LazyReranker(build, eager=backend == "remote")


def _check_nothing_beside(
    given: Mapping[str, Any], options: Mapping[str, Any], *, model: Any, base_url: Any
) -> None:
    # api_key is left out: it may come from the environment without the user asking.
    extra = sorted(set(given) - {"api_key"}) + sorted(options)
    extra += ["model"] if model is not None else []
    extra += ["base_url"] if base_url is not None else []
    if extra:
        raise InvalidInputError(
            f"A ready reranker was passed together with backend settings ({', '.join(extra)}), "
            "which would be ignored. Configure the reranker itself, or drop reranker=."
        )


def _ready(reranker: Reranker) -> Reranker:
    return reranker


# Settings every adapter passes to the backend by name, and all the fields a backend is built from:
# changing one of those rebuilds it.
_PASSED_SETTINGS = ("device", "dtype", "max_length", "timeout", "long_documents")
BACKEND_FIELDS = ("reranker", "model", "base_url", "api_key", *_PASSED_SETTINGS, "backend_options")


def backend_snapshot(adapter: Any) -> dict[str, Any]:
    """The values of ``adapter``'s `BACKEND_FIELDS`, copied so that later changes show."""
    snapshot = {name: getattr(adapter, name) for name in BACKEND_FIELDS}
    if isinstance(adapter.base_url, list):
        snapshot["base_url"] = list(adapter.base_url)
    snapshot["backend_options"] = dict(adapter.backend_options)
    return snapshot


def build_backend(adapter: Any, api_key: str | None) -> LazyReranker:
    """`adapter_backend` from an adapter's `BACKEND_FIELDS` (``api_key`` resolved)."""
    backend = adapter_backend(
        reranker=adapter.reranker,
        model=adapter.model,
        base_url=adapter.base_url,
        settings={"api_key": api_key, **{name: getattr(adapter, name) for name in _PASSED_SETTINGS}},
        options=adapter.backend_options,
    )
    backend.settings = backend_snapshot(adapter)
    return backend


def current_backend(adapter: Any, backend: LazyReranker, api_key: Callable[[], str | None]) -> LazyReranker:
    """``backend`` while ``adapter``'s backend fields are those it was built from, else a new one.

    ``api_key`` resolves the key (from a secret or the environment) only when a
    new backend is built. The caller stores what it gets back.
    """
    if backend.settings == backend_snapshot(adapter):
        return backend
    return build_backend(adapter, api_key())
