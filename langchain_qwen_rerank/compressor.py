"""``QwenRerank``: a LangChain document compressor backed by Qwen3-Reranker."""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from qwen_rerank import DEFAULT_MODEL, InvalidInputError, Reranker, RerankResult
from qwen_rerank._adapters import (
    LazyReranker,
    api_key_from_env,
    backend_from_fields,
    check_call_settings,
    cut_metadata,
    invalid_input_in,
    rerank_inputs,
)

__all__ = ["QwenRerank"]


class _Default(enum.Enum):
    TOP_N = enum.auto()


def _secret_from_env() -> SecretStr | None:
    key = api_key_from_env()
    return SecretStr(key) if key is not None else None


class QwenRerank(BaseDocumentCompressor):
    """Reorders retrieved documents by relevance with Qwen3-Reranker, locally or on vLLM.

    Returns new ``Document`` objects, best first, each with its ``page_content``,
    its ``id`` and a deep copy of its metadata plus ``metadata["relevance_score"]``
    (a float in [0, 1]). The documents passed in are never modified.

    Without ``base_url`` the model runs in this process (``pip install
    "qwen-rerank[local]"``) and is loaded on the first call; with ``base_url``
    it is scored by a vLLM server and torch is never imported.

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from langchain_qwen_rerank import QwenRerank

            retriever = ContextualCompressionRetriever(
                base_compressor=QwenRerank(top_n=5), base_retriever=vector_store.as_retriever(k=50)
            )
            docs = retriever.invoke("What is the capital of China?")

    Backend settings (``model``, ``base_url``, ``device``...) are read once,
    when the backend is built; ``top_n``, ``score_threshold`` and
    ``instruction`` are read on every call.
    """

    model: str = DEFAULT_MODEL
    """Hub id or local folder of the checkpoint to run; with ``base_url``, the model name
    to ask the server for (left at the default, the server's own model is used)."""

    base_url: str | list[str] | None = None
    """URL of a vLLM server (or a list of replicas). When set, the remote backend is used."""

    api_key: SecretStr | None = Field(default_factory=_secret_from_env, exclude=True)
    """API key of the vLLM server; defaults to the ``QWEN_RERANK_API_KEY`` environment
    variable. Never shown in the repr nor serialised."""

    top_n: int | None = 3
    """Number of documents to return; ``None`` returns them all."""

    score_threshold: float | None = None
    """Keep only documents whose score is at least this; ``None`` keeps all."""

    instruction: str | None = None
    """Tells the model what "relevant" means for your task; ``None`` uses the backend's
    (by default :data:`qwen_rerank.DEFAULT_INSTRUCTION`)."""

    reranker: Reranker | None = Field(default=None, exclude=True)
    """A ready backend, so that one loaded model serves several compressors (and
    LlamaIndex postprocessors). No other backend setting may be given with it."""

    device: str | None = None
    """Local backend only: ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``; ``None`` picks one."""

    dtype: str | None = None
    """Local backend only: ``"float32"``, ``"bfloat16"`` or ``"float16"``; ``None`` picks one."""

    max_length: int | None = None
    """Most tokens one prompt may take; longer documents are truncated from their end."""

    timeout: float | None = None
    """Remote backend only: seconds to wait for the server."""

    backend_options: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments for the backend's constructor (``LocalReranker`` or
    ``VLLMReranker``), e.g. ``{"max_batch_tokens": 8192}``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    _backend: LazyReranker = PrivateAttr()

    if not TYPE_CHECKING:  # type checkers keep pydantic's signature, built from the fields

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                if (ours := invalid_input_in(exc)) is None:
                    raise
                raise ours from exc

    @model_validator(mode="before")
    @classmethod
    def _check_call_settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            check_call_settings(data.get("top_n"), data.get("score_threshold"), data.get("instruction"))
        return data

    def model_post_init(self, context: Any, /) -> None:
        self._backend = backend_from_fields(self)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The documents reranked against ``query``: new copies, best first, at most ``top_n``.

        An empty list returns ``[]`` without loading or calling the model.

        Raises:
            InvalidInputError: ``query`` is not a str, or an item is not a
                ``Document`` with text content (the message names its position).
        """
        checked, docs, texts = rerank_inputs(query, documents, _page_content, "documents")
        if not docs:
            return []
        results = self._backend.get().rerank(checked, texts, **self._settings(self.top_n))
        return [_scored_copy(docs[result.index], result) for result in results]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`, through the backend's native ``arerank``."""
        checked, docs, texts = rerank_inputs(query, documents, _page_content, "documents")
        if not docs:
            return []
        backend = await self._backend.aget()
        results = await backend.arerank(checked, texts, **self._settings(self.top_n))
        return [_scored_copy(docs[result.index], result) for result in results]

    def rerank(
        self,
        documents: Sequence[str | Document | Mapping[str, Any]],
        query: str,
        *,
        top_n: int | Literal[_Default.TOP_N] | None = _Default.TOP_N,
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first, as CohereRerank returns.

        ``index`` is the document's position in ``documents``. Documents may be
        strings, ``Document`` objects, or dicts with a ``"text"`` (or
        ``"page_content"``) key. ``top_n`` defaults to the instance's;
        ``None`` returns all.
        """
        checked, _, texts = rerank_inputs(query, documents, _any_text, "documents")
        if not texts:
            return []
        results = self._backend.get().rerank(checked, texts, **self._settings(top_n))
        return _as_dicts(results)

    async def arerank(
        self,
        documents: Sequence[str | Document | Mapping[str, Any]],
        query: str,
        *,
        top_n: int | Literal[_Default.TOP_N] | None = _Default.TOP_N,
    ) -> list[dict[str, Any]]:
        """Async :meth:`rerank`."""
        checked, _, texts = rerank_inputs(query, documents, _any_text, "documents")
        if not texts:
            return []
        backend = await self._backend.aget()
        return _as_dicts(await backend.arerank(checked, texts, **self._settings(top_n)))

    def _settings(self, top_n: int | Literal[_Default.TOP_N] | None) -> dict[str, Any]:
        return {
            "top_n": self.top_n if top_n is _Default.TOP_N else top_n,
            "score_threshold": self.score_threshold,
            "instruction": self.instruction,
        }


def _page_content(document: object) -> object:
    if not isinstance(document, Document):
        raise InvalidInputError(f"must be a langchain_core Document, got {type(document).__name__}.")
    return document.page_content


def _any_text(document: object) -> object:
    if isinstance(document, str):
        return document
    if isinstance(document, Document):
        return document.page_content
    if isinstance(document, Mapping):
        for key in ("text", "page_content"):
            if key in document:
                return document[key]
        raise InvalidInputError(
            f"is a dict without a 'text' or 'page_content' key (keys: {sorted(map(str, document))}); "
            "put the text to score under 'text'."
        )
    raise InvalidInputError(
        f"must be a str, a Document or a dict with a 'text' key, got {type(document).__name__}."
    )


def _scored_copy(document: Document, result: RerankResult) -> Document:
    metadata = copy.deepcopy(document.metadata)
    metadata["relevance_score"] = result.score
    metadata.update(cut_metadata(result))
    return document.model_copy(update={"metadata": metadata})


def _as_dicts(results: list[RerankResult]) -> list[dict[str, Any]]:
    return [{"index": result.index, "relevance_score": result.score} for result in results]
