"""Framework-free logic shared by the LangChain and LlamaIndex adapters, written once.

The adapters declare their fields the way their ecosystem expects (pydantic
models) and delegate everything else here: which settings go to which backend,
building that backend once on first use, turning documents or nodes into text
with errors that name the position, and surfacing our own error when pydantic
wraps it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from qwen_rerank._validation import check_instruction, check_query, check_score_threshold, check_top_n
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import create_reranker
from qwen_rerank.remote import API_KEY_ENV
from qwen_rerank.results import RerankResult

__all__ = [
    "API_KEY_ENV",
    "LazyReranker",
    "adapter_backend",
    "api_key_from_env",
    "backend_from_fields",
    "check_call_settings",
    "cut_metadata",
    "invalid_input_in",
    "rerank_inputs",
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


def adapter_backend(
    *,
    reranker: Reranker | None,
    model: str,
    model_is_default: bool,
    base_url: str | Sequence[str] | None,
    settings: Mapping[str, Any],
    options: Mapping[str, Any],
) -> LazyReranker:
    """An adapter's backend, from its fields: checked now, built now or on first use.

    A remote backend is built at once (that does no I/O), so a bad setting fails
    when the adapter is constructed; a local one is built on first use, since
    loading a model takes seconds. With ``base_url`` and ``model_is_default``,
    no model name is sent, so the server uses whatever model it serves.

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
        extra += ["base_url"] if base_url is not None else []
        if extra:
            raise InvalidInputError(
                f"A ready reranker was passed together with backend settings ({', '.join(extra)}), "
                "which would be ignored. Configure the reranker itself, or drop reranker=."
            )
        ready = reranker
        return LazyReranker(lambda: ready, eager=True)
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
    name = None if base_url is not None and model_is_default else model
    return LazyReranker(
        lambda: create_reranker(name, base_url=base_url, **kwargs), eager=base_url is not None
    )


def cut_metadata(result: RerankResult) -> dict[str, Any]:
    """The metadata keys an adapter adds about what the model read of a document.

    ``truncated``: the document's tail was cut to fit ``max_length``;
    ``best_span``: in chunk mode, ``[start, end]`` character offsets of the best
    window, ``None`` when the document was scored whole.
    """
    return {"truncated": result.truncated, "best_span": None if result.span is None else list(result.span)}


def backend_from_fields(adapter: Any) -> LazyReranker:
    """:func:`adapter_backend` for an adapter model with the shared backend fields.

    ``adapter`` is a pydantic model with ``reranker``, ``model``, ``base_url``,
    ``api_key`` (a SecretStr or None), ``device``, ``dtype``, ``max_length``,
    ``timeout`` and ``backend_options``, as both adapters declare them.
    """
    api_key = adapter.api_key
    return adapter_backend(
        reranker=adapter.reranker,
        model=adapter.model,
        model_is_default="model" not in adapter.model_fields_set,
        base_url=adapter.base_url,
        settings={
            "api_key": api_key.get_secret_value() if api_key is not None else None,
            "device": adapter.device,
            "dtype": adapter.dtype,
            "max_length": adapter.max_length,
            "timeout": adapter.timeout,
        },
        options=adapter.backend_options,
    )


class LazyReranker:
    """A backend built once, on first use (or at once with ``eager``), even when threads race."""

    def __init__(self, build: Callable[[], Reranker], *, eager: bool = False) -> None:
        self._build = build
        self._reranker: Reranker | None = None
        self._lock = threading.Lock()
        if eager:
            self.get()

    @property
    def built(self) -> bool:
        """Whether the backend exists yet."""
        return self._reranker is not None

    def get(self) -> Reranker:
        """The backend, building it now if this is the first use."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = self._build()
        return self._reranker

    async def aget(self) -> Reranker:
        """The backend; a first build runs in a worker thread so the event loop keeps running."""
        if self._reranker is not None:
            return self._reranker
        return await asyncio.to_thread(self.get)

    def __deepcopy__(self, memo: dict[int, Any]) -> LazyReranker:
        # A copied adapter shares the backend: a loaded model is never duplicated.
        return self


def rerank_inputs(
    query: Any, items: Iterable[T], text_of: Callable[[T], object], what: str
) -> tuple[str, list[T], list[str]]:
    """The checked query, the items as a new list, and the text of each item.

    ``text_of`` returns an item's text, or raises InvalidInputError when the
    item is of the wrong kind; the message is then prefixed with ``{what}[i]``,
    so the user learns which position is wrong.

    Raises:
        InvalidInputError: ``query`` is not a str, ``items`` is a bare string
            or not iterable, or an item is not of the right kind or its
            content is not text.
    """
    checked = check_query(query)
    if isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Iterable):
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}.")
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


def invalid_input_in(error: Exception) -> InvalidInputError | None:
    """A fresh copy of the InvalidInputError inside a pydantic ValidationError, if any.

    Pydantic wraps every ValueError raised while validating a model; adapters
    re-raise ours so users get (and can catch) the same error as from the core::

        except ValidationError as exc:
            if (ours := invalid_input_in(exc)) is None:
                raise
            raise ours from exc
    """
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return None
    for detail in errors():
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):
            return InvalidInputError(str(cause))
    return None
