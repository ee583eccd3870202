"""``QwenRanker``: a Haystack ranker component backed by Qwen3-Reranker."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import Secret, deserialize_secrets_inplace

from qwen_rerank import InvalidInputError, Reranker, RerankResult
from qwen_rerank.integrations.adapters import (
    API_KEY_ENV,
    ItemMedia,
    LazyReranker,
    build_backend,
    check_call_settings,
    current_backend,
    public_options,
    redact_urls,
    rerank_inputs,
    result_metadata,
    seal_base_url,
    text_with_metadata,
    unseal_base_url,
)
from qwen_rerank.integrations.fallback import RerankCall, check_on_error
from qwen_rerank.media import IMAGE_EXTENSIONS

__all__ = ["QwenRanker"]


@component
class QwenRanker:
    """Ranks documents by relevance to a query with Qwen3-Reranker, locally or on vLLM.

    Returns new ``Document`` objects, best first, each with ``score`` set to
    the relevance in [0, 1], its ``id``, ``content`` and a copy of its ``meta``
    (a value that cannot be deep-copied is shared). The documents passed in
    are never modified.

    Usage example:

    ```python
    from haystack import Document
    from haystack_qwen_rerank import QwenRanker

    ranker = QwenRanker(top_k=2)
    ranker.warm_up()
    docs = [Document(content="Paris is in France."), Document(content="Beijing is China's capital.")]
    result = ranker.run(query="What is the capital of China?", documents=docs)
    print(result["documents"][0].content)
    ```

    Without ``base_url`` the model runs in this process (``pip install
    "qwen-rerank[local]"``) and ``warm_up()`` loads it; with ``base_url`` a
    vLLM server scores and torch is never imported. Changing a backend
    attribute (``model``, ``base_url``, ``device``...) after construction
    rebuilds the backend on the next call. Nothing is loaded until
    ``warm_up()`` or the first run.

    A pickle of the component holds its API key and any URL password (the
    unpickled component must reach the server): keep pickles private.

    Args:
        model: Hub id or local folder (str or ``pathlib.Path``) of the checkpoint; ``None``
            runs Qwen/Qwen3-Reranker-0.6B. With ``base_url``, the model name to ask the server
            for; ``None`` lets the server use its own.
        base_url: URL of a vLLM server (or a list of replicas); selects the remote backend.
            A ``user:password@`` part is sent as HTTP basic auth and never serialized.
        api_key: The server's API key, as a Haystack ``Secret``; by default read from the
            ``QWEN_RERANK_API_KEY`` environment variable, when set. Never serialized as a value.
        top_k: Most documents to return; ``None`` returns them all.
        score_threshold: Keep only documents whose score is at least this.
        instruction: Tells the model what "relevant" means for your task; ``None`` uses
            ``qwen_rerank.DEFAULT_INSTRUCTION``.
        meta_fields_to_embed: Meta fields whose values are scored with the content, each
            before it, in this order (missing or empty ones are skipped).
        meta_data_separator: What joins those values and the content.
        device: Local backend only: ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.
        dtype: Local backend only: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        max_length: Most tokens one prompt may take; longer documents are cut at their end.
        timeout: Remote backend only: seconds to wait for the server.
        long_documents: ``"truncate"`` (the default) cuts a document longer than
            ``max_length`` at its end; ``"chunk"`` scores overlapping windows and keeps the
            best, reported as ``meta["best_span"]`` (a remote backend needs ``tokenizer=`` in
            ``backend_options``).
        backend_options: Further keyword arguments for ``LocalReranker`` or ``VLLMReranker``;
            not the API key, which goes in ``api_key``.
        reranker: A ready backend to share between components; no other backend setting may
            be given with it. It is neither serialized nor closed by this component.
        on_error: ``"raise"`` (the default) raises a backend failure (server down, deadline
            passed, malformed reply, load error, out of memory); ``"passthrough"`` returns the
            documents in retrieval order with their own scores, ``top_k`` applied, each marked
            ``meta["reranked"] = False`` with ``meta["rerank_error"]`` the error's class.
        trace_content: Record the query and document text in OpenTelemetry spans.

    Raises:
        InvalidInputError: A setting is invalid or belongs to the other backend.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        base_url: str | list[str] | None = None,
        api_key: Secret | None = Secret.from_env_var(API_KEY_ENV, strict=False),  # noqa: B008
        top_k: int | None = 10,
        score_threshold: float | None = None,
        instruction: str | None = None,
        meta_fields_to_embed: list[str] | None = None,
        meta_data_separator: str = "\n",
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        timeout: float | None = None,
        long_documents: Literal["truncate", "chunk"] | None = None,
        backend_options: dict[str, Any] | None = None,
        reranker: Reranker | None = None,
        on_error: Literal["raise", "passthrough"] = "raise",
        trace_content: bool = False,
    ) -> None:
        check_call_settings(top_k, score_threshold, instruction, top_n_name="top_k")
        self.on_error = check_on_error(on_error)
        self.trace_content = bool(trace_content)
        if not isinstance(meta_data_separator, str):
            raise InvalidInputError(f"meta_data_separator must be a str, got {meta_data_separator!r}.")
        self.model, self.base_url, self.api_key, self.reranker = model, base_url, api_key, reranker
        self.top_k, self.score_threshold, self.instruction = top_k, score_threshold, instruction
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.meta_data_separator = meta_data_separator
        self.device, self.dtype, self.max_length, self.timeout = device, dtype, max_length, timeout
        self.long_documents = long_documents
        self.backend_options = dict(backend_options or {})
        self._backend = self._new_backend()

    # -- the backend ----------------------------------------------------------------------------
    def _api_key(self) -> str | None:
        return self.api_key.resolve_value() if self.api_key is not None else None

    def _new_backend(self) -> LazyReranker:
        return build_backend(self, self._api_key())

    def _current_backend(self) -> LazyReranker:
        self._backend = current_backend(self, self._backend, self._api_key)
        return self._backend

    def warm_up(self) -> None:
        """Load the local model now (a remote backend needs nothing); later calls do nothing."""
        self._current_backend().get()

    def close(self) -> None:
        """Release a backend this component built; a later run builds it anew. ``reranker=`` stays open."""
        self._backend.close()

    async def close_async(self) -> None:
        """Async `close`."""
        await self._backend.aclose()

    # -- running ----------------------------------------------------------------------------
    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> dict[str, list[Document]]:
        """Rank ``documents`` by relevance to ``query``, best first.

        Args:
            query: The query.
            documents: The documents to rank; an empty list returns ``[]`` without the model.
            top_k: Overrides the component's ``top_k`` for this run.
            score_threshold: Overrides the component's ``score_threshold`` for this run.
            instruction: Overrides the component's ``instruction`` for this run.

        Returns:
            ``{"documents": [...]}``: new documents with ``score`` set, best first.

        Raises:
            InvalidInputError: The query is not a str, an item is not a ``Document`` with text
                content (the message names its position), or an override is invalid.
        """
        texts, docs, settings = self._prepare(query, documents, top_k, score_threshold, instruction)
        if not docs:
            return {"documents": []}
        call = RerankCall.begin(self._current_backend(), self.on_error)
        results = call.rerank(query, texts, ids=[d.id for d in docs], media=_media(docs), **settings)
        return {"documents": _scored(docs, results)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> dict[str, list[Document]]:
        """Async `run`, through the backend's native ``arerank``; it never blocks the event loop."""
        texts, docs, settings = self._prepare(query, documents, top_k, score_threshold, instruction)
        if not docs:
            return {"documents": []}
        call = await RerankCall.abegin(self._current_backend(), self.on_error)
        results = await call.arerank(query, texts, ids=[d.id for d in docs], media=_media(docs), **settings)
        return {"documents": _scored(docs, results)}

    def _prepare(
        self,
        query: str,
        documents: Sequence[Document],
        top_k: int | None,
        score_threshold: float | None,
        instruction: str | None,
    ) -> tuple[list[str], list[Document], dict[str, Any]]:
        check_call_settings(top_k, score_threshold, instruction, top_n_name="top_k")
        _, docs, texts = rerank_inputs(query, documents, self._document_text, "documents")
        settings = {
            "top_n": top_k if top_k is not None else self.top_k,
            "score_threshold": score_threshold if score_threshold is not None else self.score_threshold,
            "instruction": instruction if instruction is not None else self.instruction,
            "on_error": self.on_error,
            "trace_content": self.trace_content,
        }
        return texts, docs, settings

    def _document_text(self, document: object) -> object:
        if not isinstance(document, Document):
            raise InvalidInputError(f"must be a haystack Document, got {type(document).__name__}.")
        if document.content is None:
            if _document_media(document, "") is not None:
                return ""  # scored on its image by a multimodal model, else refused by name
            raise InvalidInputError(
                f"(id {document.id!r}) has no text content; qwen-rerank scores text. "
                "Give it content or leave it out."
            )
        return text_with_metadata(
            document.content,
            document.meta,
            self.meta_fields_to_embed,
            separator=self.meta_data_separator,
            named=False,
        )

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting but ``reranker``; the API key as its ``Secret`` recipe, URL credentials left out."""
        return default_to_dict(
            self,
            model=os.fspath(self.model) if self.model is not None else None,
            base_url=redact_urls(self.base_url),
            api_key=self.api_key.to_dict() if self.api_key is not None else None,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            instruction=self.instruction,
            meta_fields_to_embed=self.meta_fields_to_embed,
            meta_data_separator=self.meta_data_separator,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            timeout=self.timeout,
            long_documents=self.long_documents,
            backend_options=public_options(self.backend_options),
            on_error=self.on_error,
            trace_content=self.trace_content,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QwenRanker:
        """A ranker from ``to_dict``'s output (which is left unchanged).

        Raises:
            InvalidInputError: ``data`` is not such a dict, or a parameter is
                unknown or has a bad value (the message names it).
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("init_parameters", {}), Mapping):
            raise InvalidInputError(
                "QwenRanker.from_dict takes the dict QwenRanker.to_dict() returns, "
                f"{{'type': ..., 'init_parameters': {{...}}}}, got {type(data).__name__}."
            )
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        try:
            deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
            ranker: QwenRanker = default_from_dict(cls, data)
        except InvalidInputError:
            raise
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"Cannot build a QwenRanker from these init_parameters: {exc}. Give only the parameters "
                "QwenRanker takes, with the values QwenRanker.to_dict() writes (api_key as a Secret's "
                "dict, e.g. Secret.from_env_var('QWEN_RERANK_API_KEY').to_dict())."
            ) from exc
        return ranker

    def __getstate__(self) -> dict[str, Any]:
        # base_url sealed, so no text form of the state shows the URL's credentials.
        state = seal_base_url(self.__dict__)
        state.pop("_backend", None)  # rebuilt from the settings on unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(unseal_base_url(state))
        self._backend = self._new_backend()


def _scored(documents: list[Document], results: list[RerankResult]) -> list[Document]:
    return [_scored_copy(documents[result.index], result) for result in results]


def _scored_copy(document: Document, result: RerankResult) -> Document:
    meta = result_metadata(document.meta, result)
    if not result.reranked:  # on_error="passthrough" after a backend failure: the retrieval score stays
        return dataclasses.replace(document, meta=meta)
    return dataclasses.replace(document, score=result.score, meta=meta)


def _media(documents: list[Document]) -> list[ItemMedia | None]:
    return [_document_media(document, f"documents[{k}]") for k, document in enumerate(documents)]


def _document_media(document: Document, position: str) -> ItemMedia | None:
    """The image of a document: its ``blob`` when that is an image (``ByteStream`` with an
    ``image/*`` MIME type), or, for a document without content, the image file at
    ``meta["file_path"]`` (what Haystack's ``ImageFileToDocument`` makes); ``None`` otherwise."""
    blob = document.blob
    if blob is not None and (blob.mime_type or "").startswith("image/"):
        image: Any = blob.data
        field = "blob"
    elif document.content is None and _is_image_path(document.meta.get("file_path")):
        image = os.fspath(document.meta["file_path"])
        field = "meta['file_path']"
    else:
        return None
    return ItemMedia((image,), name=f"{position} (id {document.id!r})", fields=field)


def _is_image_path(value: Any) -> bool:
    if not isinstance(value, (str, os.PathLike)):
        return False
    return os.path.splitext(os.fspath(value).lower())[1] in IMAGE_EXTENSIONS
