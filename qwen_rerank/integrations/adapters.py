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
  metadata copied safely, the ``truncated``/``best_span`` keys;
- secrets: URLs shown without credentials, ``backend_options`` never holding a
  key, a URL sealed ([`Sealed`][qwen_rerank.integrations.adapters.Sealed]) so
  that no text form of a pickled state shows it;
- tracing: the served model and the token usage of the last call.

Scoring pairs grouped by query is the core's
[`Reranker.score_pairs`][qwen_rerank.Reranker.score_pairs]. Nothing here imports
a framework.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from qwen_rerank._secrets import display_url
from qwen_rerank._validation import check_instruction, check_query, check_score_threshold, check_top_n
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import backend_for, check_backend_options, create_reranker
from qwen_rerank.remote import API_KEY_ENV
from qwen_rerank.results import RerankResult

__all__ = [
    "API_KEY_ENV",
    "BACKEND_FIELDS",
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
    "served_model",
    "text_with_metadata",
    "usage_of",
]

T = TypeVar("T")

# backend_options keys that hold a secret, and the adapter field that keeps each one secret.
_SECRET_OPTIONS = {"api_key": "api_key"}
_HIDDEN = "**********"


def api_key_from_env() -> str | None:
    """The API key from ``QWEN_RERANK_API_KEY``, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


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


def redact_urls(base_url: str | Sequence[str] | None) -> str | list[str] | None:
    """``base_url`` (one URL or a list) with any ``user:password@`` removed, for reprs and serialization."""
    if base_url is None:
        return None
    if isinstance(base_url, str):
        return display_url(base_url)
    return [display_url(url) if isinstance(url, str) else url for url in base_url]


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
    _check_options_hold_no_secret(options)
    if reranker is not None:
        _check_nothing_beside(given, options, model=model, base_url=base_url)
        return LazyReranker(functools.partial(_ready, reranker), eager=True, owned=False)
    backend = backend_for(base_url)
    if backend == "local":
        # An API key means nothing locally, and may have come from the environment unasked.
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


def _check_options_hold_no_secret(options: Mapping[str, Any]) -> None:
    for option, field in _SECRET_OPTIONS.items():
        if option in options:
            raise InvalidInputError(
                f"backend_options holds {option!r}, which would then be shown and serialized in clear; "
                f"pass it as the adapter's own {field}= setting (kept secret) and remove it from "
                "backend_options."
            )


def public_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``backend_options`` fit to show or serialize: a secret in it is masked.

    [`adapter_backend`][qwen_rerank.integrations.adapters.adapter_backend] refuses
    such options; this keeps them hidden even where they were set past that check.
    """
    return {name: _HIDDEN if name in _SECRET_OPTIONS else value for name, value in options.items()}


def cut_metadata(result: RerankResult) -> dict[str, Any]:
    """The metadata keys an adapter adds about what the model read of a document.

    ``truncated``: the document's tail was cut to fit ``max_length``;
    ``best_span``: in chunk mode, ``[start, end]`` character offsets of the best
    window, ``None`` when the document was scored whole.
    """
    return {"truncated": result.truncated, "best_span": None if result.span is None else list(result.span)}


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


def _ready(reranker: Reranker) -> Reranker:
    return reranker


def served_model(reranker: Reranker) -> str:
    """The model a backend scores with, as tracing events report it.

    [`Reranker.served_model`][qwen_rerank.Reranker.served_model], or the
    backend's class name when it does not say.
    """
    return reranker.served_model or type(reranker).__name__


def current_backend(adapter: Any, backend: LazyReranker, api_key: Callable[[], str | None]) -> LazyReranker:
    """``backend`` while ``adapter``'s backend fields are those it was built from, else a new one.

    ``api_key`` resolves the key (from a secret or the environment) only when a
    new backend is built. The caller stores what it gets back.
    """
    if backend.settings == backend_snapshot(adapter):
        return backend
    return build_backend(adapter, api_key())


class Sealed:
    """A value that no text form shows: its repr is masked, pickling carries it.

    Adapters seal a ``base_url`` with credentials in their pickled state, so
    that printing or logging that state never reveals the password. The pickle
    itself holds the value (an unpickled adapter must work): keep pickles of
    adapters as private as the secrets they hold.
    """

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        """The sealed value."""
        return self._value

    def __repr__(self) -> str:
        return f"Sealed({_HIDDEN!r})"


class LazyReranker:
    """A backend built once, on first use (or at once with ``eager``), even when threads race.

    ``owned`` says the adapter built it (rather than receiving a ready one), so
    `close` releases it. ``settings`` records what it was built from, so
    an adapter can tell that a field changed since. Pickling keeps the recipe,
    not a backend built from it: the copy builds its own on first use.
    """

    def __init__(
        self,
        build: Callable[[], Reranker],
        *,
        eager: bool = False,
        owned: bool = True,
        settings: Any = None,
    ) -> None:
        self._build = build
        self.owned = owned
        self.settings = settings
        self._reranker: Reranker | None = None
        self._lock = threading.Lock()
        if eager:
            self.get()

    @property
    def built(self) -> bool:
        """Whether the backend exists now."""
        return self._reranker is not None

    def get(self) -> Reranker:
        """The backend, building it now if this is the first use."""
        reranker = self._reranker
        if reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = self._build()
                reranker = self._reranker
        return reranker

    async def aget(self) -> Reranker:
        """The backend; a first build runs in a worker thread so the event loop keeps running."""
        if self._reranker is not None:
            return self._reranker
        return await asyncio.to_thread(self.get)

    def close(self) -> None:
        """Close and drop a backend built here (a later use builds a new one); a ready one is kept."""
        released = self._release()
        if released is not None:
            released.close()

    async def aclose(self) -> None:
        """Async `close`."""
        released = self._release()
        if released is not None:
            await released.aclose()

    def _release(self) -> Reranker | None:
        if not self.owned:
            return None
        with self._lock:
            released, self._reranker = self._reranker, None
        return released

    def __deepcopy__(self, memo: dict[int, Any]) -> LazyReranker:
        # A copied adapter shares the backend: a loaded model is never duplicated.
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {
            "build": self._build,
            "owned": self.owned,
            "settings": self.settings,
            "reranker": None if self.owned else self._reranker,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._build = state["build"]
        self.owned = state["owned"]
        self.settings = state["settings"]
        self._reranker = state["reranker"]
        self._lock = threading.Lock()


def rerank_inputs(
    query: Any, items: Iterable[T], text_of: Callable[[T], object], what: str
) -> tuple[str, list[T], list[str]]:
    """The checked query, the items as a new list, and the text of each item.

    ``text_of`` returns an item's text, or raises InvalidInputError when the
    item is of the wrong kind; the message is then prefixed with ``{what}[i]``,
    so the user learns which position is wrong.

    Raises:
        InvalidInputError: ``query`` is not a str, ``items`` is a bare string,
            a bare dict or not iterable, or an item is not of the right kind
            or its content is not text.
    """
    checked = check_query(query)
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        hint = "; wrap a single document in a list" if isinstance(items, (str, Mapping)) else ""
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}{hint}.")
    listed = list(items)
    texts: list[str] = []
    for position, item in enumerate(listed):
        try:
            text = text_of(item)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{what}[{position}] {exc}") from None
        if not isinstance(text, str):
            raise InvalidInputError(
                f"{what}[{position}] has content of type {type(text).__name__}, not text; "
                "qwen-rerank scores text only."
            )
        texts.append(text)
    return checked, listed, texts


def text_with_metadata(
    content: str,
    metadata: Mapping[str, Any],
    fields: Sequence[str],
    *,
    separator: str = "\n",
    named: bool = True,
) -> str:
    """The text to score: the listed metadata fields, then ``content``, joined by ``separator``.

    Fields missing from ``metadata`` (or empty) are skipped. With ``named``
    each field reads ``name: value`` (LangChain's ``rank_fields``); without,
    only the value (Haystack's ``meta_fields_to_embed``). With no fields the
    content is returned as it is.
    """
    parts = [
        f"{name}: {metadata[name]}" if named else str(metadata[name])
        for name in fields
        if metadata.get(name) not in (None, "")
    ]
    return separator.join([*parts, content]) if parts else content


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


def invalid_input_in(error: Exception) -> InvalidInputError | None:
    """A fresh copy of the InvalidInputError inside a pydantic ValidationError, if any.

    Pydantic wraps every ValueError raised while validating a model; adapters
    re-raise ours so users get (and can catch) the same error as from the core.
    Raise it outside the ``except`` block: pydantic's error quotes the input,
    secrets included, and must not become its ``__context__``.
    """
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return None
    for detail in errors():
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):
            return InvalidInputError(str(cause))
    return None
