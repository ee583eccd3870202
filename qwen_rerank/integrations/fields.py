"""The pydantic fields and behaviour that the LangChain and LlamaIndex adapters share.

Both frameworks build on pydantic, so both adapters inherit these mixins;
only the adapters import this module (the core never imports pydantic).
What it gives them:

- the backend fields (``model``, ``base_url``, ``api_key``, ``device``...),
  with their descriptions and checks, declared once;
- a backend built from those fields, rebuilt whenever one of them changes
  (by assignment or ``model_copy(update=...)``), so no call goes to a stale
  backend; an assignment that would build a broken backend is refused and
  leaves the adapter as it was;
- ``close()`` / ``aclose()``, which release a backend the adapter built;
- secrets that are never written out: ``api_key`` is a ``SecretStr`` left out
  of every dump, ``backend_options`` may not hold a key (and one set past that
  check is masked), and a ``user:password@`` in ``base_url`` is removed from the
  repr and from every dump. Pickling carries the key and the URL (inside
  ``SecretStr`` and [`Sealed`][qwen_rerank.integrations.adapters.Sealed]), so
  the unpickled adapter works: a pickle holds the secrets.

An adapter author subclasses [`BackendFields`][qwen_rerank.integrations.fields.BackendFields]
(or [`RankingFields`][qwen_rerank.integrations.fields.RankingFields]) together
with the framework's base class, and calls ``self._current_backend().get()``
(or ``await ....aget()``) to score.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)

from qwen_rerank._fallback import check_on_error
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.integrations.adapters import (
    BACKEND_FIELDS,
    LazyReranker,
    api_key_from_env,
    build_backend,
    check_call_settings,
    current_backend,
    invalid_input_in,
    public_options,
    redact_urls,
    seal_base_url,
    unseal_base_url,
)

__all__ = ["BackendFields", "RankingFields"]


def _secret_from_env() -> SecretStr | None:
    key = api_key_from_env()
    return SecretStr(key) if key is not None else None


class BackendFields(BaseModel):
    """Which backend scores, and how: the settings every adapter takes."""

    model: str | Path | None = Field(
        default=None,
        description="Hub id or local folder (str or pathlib.Path) of the checkpoint to run; None runs "
        "Qwen/Qwen3-Reranker-0.6B. With base_url, the model name to ask the server for; None lets the "
        "server use its own.",
    )
    base_url: str | list[str] | None = Field(
        default=None,
        description="URL of a vLLM server (or a list of replicas). When set, the remote backend is used. "
        "A user:password@ part is sent as HTTP basic auth and never shown or serialised.",
    )
    api_key: SecretStr | None = Field(
        default_factory=_secret_from_env,
        exclude=True,
        description="API key of the vLLM server; defaults to the QWEN_RERANK_API_KEY environment "
        "variable. Never shown in the repr nor serialised.",
    )
    instruction: str | None = Field(
        default=None,
        description='Tells the model what "relevant" means for your task; None uses the backend\'s '
        "(by default qwen_rerank.DEFAULT_INSTRUCTION). A call may override it.",
    )
    reranker: Reranker | None = Field(
        default=None,
        exclude=True,
        description="A ready backend, so that one loaded model serves several adapters. No other "
        "backend setting may be given with it; close() leaves it open.",
    )
    device: str | None = Field(
        default=None, description="Local backend only: 'cuda', 'cuda:1', 'mps' or 'cpu'; None picks one."
    )
    dtype: str | None = Field(
        default=None, description="Local backend only: 'float32', 'bfloat16' or 'float16'; None picks one."
    )
    max_length: int | None = Field(
        default=None,
        description="Most tokens one prompt may take; longer documents are truncated from their end.",
    )
    timeout: float | None = Field(
        default=None, description="Remote backend only: seconds to wait for the server."
    )
    long_documents: Literal["truncate", "chunk"] | None = Field(
        default=None,
        description="What happens to a document longer than max_length: 'truncate' (the default) "
        "cuts its end, 'chunk' scores overlapping windows and keeps the best, reported as "
        "metadata 'best_span' (a remote backend needs tokenizer= in backend_options).",
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further keyword arguments for the backend's constructor (LocalReranker or "
        'VLLMReranker), e.g. {"max_batch_tokens": 8192}.',
    )

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _backend: LazyReranker = PrivateAttr()

    if not TYPE_CHECKING:  # type checkers keep pydantic's signature, built from the fields

        def __init__(self, **data: Any) -> None:
            ours: InvalidInputError | None = None
            try:
                super().__init__(**data)
            except ValidationError as exc:
                if (ours := invalid_input_in(exc)) is None:
                    raise
            if ours is not None:
                # Raised outside the except block: pydantic's error quotes the input, secrets
                # included, and must not ride along as the context.
                raise ours

    @model_validator(mode="before")
    @classmethod
    def _check_call_settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            check_call_settings(data.get("top_n"), data.get("score_threshold"), data.get("instruction"))
            if "on_error" in data:
                check_on_error(data["on_error"])
        return data

    def model_post_init(self, context: Any, /) -> None:
        self._backend = self._new_backend()

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in BACKEND_FIELDS:
            super().__setattr__(name, value)
            return
        previous = getattr(self, name)
        super().__setattr__(name, value)
        try:
            self._current_backend()
        except BaseException:
            super().__setattr__(name, previous)
            raise

    # -- the backend -------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _new_backend(self) -> LazyReranker:
        return build_backend(self, self._api_key())

    def _current_backend(self) -> LazyReranker:
        """The backend for the fields as they are now, rebuilt if one changed since it was made."""
        self._backend = current_backend(self, self._backend, self._api_key)
        return self._backend

    def close(self) -> None:
        """Release the backend this adapter built (a model, HTTP connections); a later call builds it anew.

        A ``reranker=`` passed in is left open: its owner closes it. Safe to
        call more than once.
        """
        self._backend.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await self._backend.aclose()

    # -- secrets never written out ----------------------------------------------------------------
    @field_serializer("base_url")
    def _serialize_base_url(self, value: str | list[str] | None) -> str | list[str] | None:
        return redact_urls(value)

    @field_serializer("backend_options")
    def _serialize_backend_options(self, value: dict[str, Any]) -> dict[str, Any]:
        return public_options(value)

    @field_serializer("model")
    def _serialize_model(self, value: str | Path | None) -> str | None:
        return os.fspath(value) if value is not None else None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "base_url":
                value = redact_urls(value)
            elif name == "backend_options":
                value = public_options(value)
            yield name, value

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["__dict__"] = seal_base_url(state["__dict__"])
        private = state.get("__pydantic_private__") or {}
        state["__pydantic_private__"] = {k: v for k, v in private.items() if k != "_backend"}
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "__dict__": unseal_base_url(state["__dict__"])})
        private = self.__pydantic_private__ or {}
        if "_backend" not in private:
            self._backend = self._new_backend()


class RankingFields(BackendFields):
    """The backend settings plus how many results to keep."""

    top_n: int | None = Field(default=3, description="Number of results to return; None returns them all.")
    score_threshold: float | None = Field(
        default=None, description="Keep only results whose score is at least this; None keeps all."
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise",
        description="What a backend failure (server down, deadline passed, malformed reply, load error, "
        "out of memory) does: 'raise' (the default) raises it; 'passthrough' returns the documents in "
        "retrieval order, top_n applied, each marked metadata['reranked'] = False with "
        "metadata['rerank_error'] the error's class. Bad input is always raised.",
    )
    trace_content: bool = Field(
        default=False,
        description="Record the query and document text in OpenTelemetry spans (off by default: "
        "ids, scores and the model only).",
    )
