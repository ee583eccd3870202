"""Framework-free logic shared by the LangChain, LlamaIndex and Haystack adapters, written once.

The adapters declare their settings the way their ecosystem expects and
delegate everything else here: which settings go to which backend, building
that backend once on first use (and releasing it), turning documents or nodes
into text with errors that name the position, copying metadata safely,
scoring (query, document) pairs grouped by query, and surfacing our own error
when pydantic wraps it. Nothing here imports a framework.
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
from qwen_rerank.factory import create_reranker
from qwen_rerank.remote import API_KEY_ENV
from qwen_rerank.results import RerankResult

__all__ = [
    "API_KEY_ENV",
    "BACKEND_FIELDS",
    "LazyReranker",
    "adapter_backend",
    "api_key_from_env",
    "backend_snapshot",
    "build_backend",
    "check_call_settings",
    "copy_metadata",
    "cut_metadata",
    "group_by_query",
    "invalid_input_in",
    "model_name",
    "redact_urls",
    "rerank_inputs",
    "score_pairs",
    "served_model",
    "text_with_metadata",
    "usage_of",
]

T = TypeVar("T")

# Adapter fields that only one backend understands; anything else goes to either.
_LOCAL_ONLY = ("device", "dtype")
_REMOTE_ONLY = ("timeout",)


def api_key_from_env() -> str | None:
    """The API key from ``QWEN_RERANK_API_KEY``, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def check_call_settings(top_n: Any, score_threshold: Any, instruction: Any) -> None:
    """Check the per-call settings an adapter stores, raising InvalidInputError."""
    check_top_n(top_n)
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

    ``settings`` are the adapter's named pass-through fields (``device``,
    ``api_key``...); those left at ``None`` are not passed on. ``options`` are
    any further keyword arguments for the backend's constructor. With
    ``reranker`` given, no other backend setting may be.

    Raises:
        InvalidInputError: ``reranker`` is combined with backend settings, or a
            setting belongs to the other backend (``device`` with ``base_url``,
            ``timeout`` without it), or the remote backend rejects a value.
        TypeError: ``options`` holds a keyword the remote backend does not take
            (for the local backend, on first use).
    """
    given = {name: value for name, value in settings.items() if value is not None}
    if reranker is not None:
        # api_key is left out: it may come from the environment without the user asking.
        extra = sorted(set(given) - {"api_key"}) + sorted(options)
        extra += ["model"] if model is not None else []
        extra += ["base_url"] if base_url is not None else []
        if extra:
            raise InvalidInputError(
                f"A ready reranker was passed together with backend settings ({', '.join(extra)}), "
                "which would be ignored. Configure the reranker itself, or drop reranker=."
            )
        return LazyReranker(functools.partial(_ready, reranker), eager=True, owned=False)
    wrong_side = _REMOTE_ONLY if base_url is None else _LOCAL_ONLY
    misplaced = [name for name in wrong_side if name in given]
    if misplaced:
        names = ", ".join(misplaced)
        raise InvalidInputError(
            f"Settings for the remote vLLM backend only ({names}) were given without base_url; "
            "set base_url to use a server, or drop them."
            if base_url is None
            else f"Settings for the local backend only ({names}) were given with base_url, which "
            "selects the remote vLLM backend; drop them, or drop base_url to run the model here."
        )
    kwargs = {**given, **options}
    if base_url is None:
        # An API key means nothing locally, and may have come from the environment unasked.
        kwargs.pop("api_key", None)
    build = functools.partial(create_reranker, model_name(model), base_url=base_url, **kwargs)
    return LazyReranker(build, eager=base_url is not None)


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

    ``{"prompt_tokens": ..., "total_tokens": ...}`` for a remote backend whose
    server reports usage; ``None`` for a local one. Read it right after the call.
    """
    usage = getattr(backend, "last_usage", None)
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}


def _ready(reranker: Reranker) -> Reranker:
    return reranker


def served_model(reranker: Reranker) -> str:
    """The model a backend scores with, as tracing events report it.

    The checkpoint of a local backend; for a remote one, the model name it
    sends, or ``"<server default> at URL"`` when it leaves the choice to the
    server; for any other backend, its class name.
    """
    local_name = getattr(reranker, "model_name", None)
    if isinstance(local_name, str):
        return local_name
    urls = getattr(reranker, "base_urls", None)
    if isinstance(urls, list) and urls:
        sent = getattr(reranker, "model", None)
        return sent if isinstance(sent, str) else f"<server default> at {urls[0]}"
    return type(reranker).__name__


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


def group_by_query(
    queries: Sequence[str], instructions: Sequence[str | None] | None = None
) -> dict[tuple[str, str | None], list[int]]:
    """The positions of each distinct (query, instruction), in order of first appearance.

    Scoring each group with one call keeps the prefix reuse of the local
    backend and one request per query on a server.
    """
    groups: dict[tuple[str, str | None], list[int]] = {}
    for position, query in enumerate(queries):
        instruction = instructions[position] if instructions is not None else None
        key: tuple[str, str | None] = (query, instruction)
        groups.setdefault(key, []).append(position)
    return groups


def score_pairs(
    reranker: Reranker,
    queries: Sequence[str],
    documents: Sequence[str],
    *,
    instructions: Sequence[str | None] | None = None,
    instruction: str | None = None,
) -> list[float]:
    """The score of each row-aligned (query, document) pair, one backend call per distinct query.

    ``instructions`` gives each row its own instruction (``None`` falls back
    to ``instruction``, then to the backend's).
    """
    scores = [0.0] * len(queries)
    for (query, row_instruction), positions in group_by_query(queries, instructions).items():
        group_scores = reranker.score(
            query,
            [documents[i] for i in positions],
            instruction=row_instruction if row_instruction is not None else instruction,
        )
        for position, score in zip(positions, group_scores, strict=True):
            scores[position] = score
    return scores


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
