"""``QwenRerank``: a LangChain document compressor backed by Qwen3-Reranker."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from qwen_rerank import InvalidInputError, RerankResult
from qwen_rerank.integrations.adapters import (
    ItemMedia,
    rerank_inputs,
    result_metadata,
    text_with_metadata,
)
from qwen_rerank.integrations.fallback import RerankCall, fallback_metadata
from qwen_rerank.integrations.fields import RankingFields
from qwen_rerank.media import base64_image

__all__ = ["QwenRerank"]


class _Default(enum.Enum):
    TOP_N = enum.auto()


class QwenRerank(RankingFields, BaseDocumentCompressor):
    """Reorders retrieved documents by relevance with Qwen3-Reranker, locally or on vLLM.

    Returns new ``Document`` objects, best first, each with its ``page_content``,
    its ``id`` and a copy of its metadata plus ``metadata["relevance_score"]``
    (a float in [0, 1]). The documents passed in are never modified. Metadata
    values that cannot be deep-copied (a lock, a client) are shared, not copied.

    Without ``base_url`` the model runs in this process (``pip install
    "qwen-rerank[local]"``) and is loaded on the first call; with ``base_url``
    it is scored by a vLLM server and torch is never imported.

    Example:
        ```python
        from langchain_classic.retrievers import ContextualCompressionRetriever
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from langchain_core.vectorstores import InMemoryVectorStore
        from langchain_qwen_rerank import QwenRerank

        texts = [f"Passage {i} about the capitals of Asia." for i in range(100)]
        vector_store = InMemoryVectorStore.from_texts(texts, DeterministicFakeEmbedding(size=64))  # yours
        retriever = ContextualCompressionRetriever(
            base_compressor=QwenRerank(top_n=5),
            # k goes in search_kwargs: as_retriever(k=50) is ignored, and retrieves 4
            base_retriever=vector_store.as_retriever(search_kwargs={"k": 50}),
        )
        docs = retriever.invoke("What is the capital of China?")  # the best 5 of 50
        assert len(docs) == 5
        ```

    Changing a backend field (``model``, ``base_url``, ``device``...), by
    assignment or ``model_copy(update=...)``, rebuilds the backend; ``top_n``,
    ``score_threshold``, ``instruction`` and ``rank_fields`` are read on every
    call. ``close()`` / ``aclose()`` release a backend the compressor built.
    """

    rank_fields: list[str] | None = Field(
        default=None,
        description="Metadata fields scored with the text, in this order: each present one as a "
        "'name: value' line above page_content. None (the default) scores page_content alone.",
    )

    model_config = ConfigDict(extra="forbid")

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
    ) -> Sequence[Document]:
        """The documents reranked against ``query``: new copies, best first, at most ``top_n``.

        ``instruction`` overrides the compressor's for this call only. An empty
        list returns ``[]`` without loading or calling the model.

        Raises:
            InvalidInputError: ``query`` is not a str, or an item is not a
                ``Document`` with text content (the message names its position).
        """
        checked, docs, texts = rerank_inputs(query, documents, self._document_text, "documents")
        if not docs:
            return []
        call = RerankCall.begin(self._current_backend(), self.on_error)
        settings = self._settings(self.top_n, instruction)
        results = call.rerank(checked, texts, ids=_ids(docs), media=_media(docs), **settings)
        return _scored_copies(docs, results, call.usage())

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
    ) -> Sequence[Document]:
        """Async `compress_documents`, through the backend's native ``arerank``."""
        checked, docs, texts = rerank_inputs(query, documents, self._document_text, "documents")
        if not docs:
            return []
        call = await RerankCall.abegin(self._current_backend(), self.on_error)
        settings = self._settings(self.top_n, instruction)
        results = await call.arerank(checked, texts, ids=_ids(docs), media=_media(docs), **settings)
        return _scored_copies(docs, results, call.usage())

    def rerank(
        self,
        documents: Sequence[str | Document | Mapping[str, Any]],
        query: str,
        *,
        top_n: int | Literal[_Default.TOP_N] | None = _Default.TOP_N,
        instruction: str | None = None,
    ) -> list[dict[str, Any]]:
        """``[{"index": i, "relevance_score": s}, ...]`` best first, as CohereRerank returns.

        ``index`` is the document's position in ``documents``. Documents may be
        strings, ``Document`` objects, or dicts with a ``"text"`` (or
        ``"page_content"``) key; ``rank_fields`` read a dict's other keys.
        ``top_n`` defaults to the instance's; ``None`` or ``-1`` returns all.
        ``instruction`` overrides the instance's for this call only.

        Raises:
            InvalidInputError: ``documents`` is a bare str or dict rather than
                a list, or an item has no text (the message names its position).
        """
        checked, listed, texts = rerank_inputs(query, documents, self._any_text, "documents")
        if not texts:
            return []
        call = RerankCall.begin(self._current_backend(), self.on_error)
        settings = self._settings(top_n, instruction)
        return _as_dicts(call.rerank(checked, texts, media=_media(listed), **settings))

    async def arerank(
        self,
        documents: Sequence[str | Document | Mapping[str, Any]],
        query: str,
        *,
        top_n: int | Literal[_Default.TOP_N] | None = _Default.TOP_N,
        instruction: str | None = None,
    ) -> list[dict[str, Any]]:
        """Async `rerank`."""
        checked, listed, texts = rerank_inputs(query, documents, self._any_text, "documents")
        if not texts:
            return []
        call = await RerankCall.abegin(self._current_backend(), self.on_error)
        settings = self._settings(top_n, instruction)
        return _as_dicts(await call.arerank(checked, texts, media=_media(listed), **settings))

    def _settings(
        self, top_n: int | Literal[_Default.TOP_N] | None, instruction: str | None
    ) -> dict[str, Any]:
        if top_n is _Default.TOP_N:
            top_n = self.top_n
        elif top_n == -1 and not isinstance(top_n, bool):
            top_n = None  # CohereRerank's "all"
        return {
            "top_n": top_n,
            "score_threshold": self.score_threshold,
            "instruction": instruction if instruction is not None else self.instruction,
            "on_error": self.on_error,
            "trace_content": self.trace_content,
        }

    def _with_fields(self, content: object, metadata: Mapping[str, Any]) -> object:
        if isinstance(content, str) and base64_image(content) is not None:
            content = ""  # an image: scored as one by a multimodal model, else refused by name
        if not self.rank_fields or not isinstance(content, str):
            return content
        return text_with_metadata(content, metadata, self.rank_fields)

    def _document_text(self, document: object) -> object:
        if not isinstance(document, Document):
            raise InvalidInputError(f"must be a langchain_core Document, got {type(document).__name__}.")
        return self._with_fields(document.page_content, document.metadata)

    def _any_text(self, document: object) -> object:
        if isinstance(document, str):
            return document
        if isinstance(document, Document):
            return self._with_fields(document.page_content, document.metadata)
        if isinstance(document, Mapping):
            for key in ("text", "page_content"):
                if key in document:
                    return self._with_fields(document[key], document)
            raise InvalidInputError(
                f"is a dict without a 'text' or 'page_content' key (keys: {sorted(map(str, document))}); "
                "put the text to score under 'text'."
            )
        raise InvalidInputError(
            f"must be a str, a Document or a dict with a 'text' key, got {type(document).__name__}."
        )


def _scored_copies(
    documents: list[Document], results: list[RerankResult], usage: dict[str, Any] | None
) -> list[Document]:
    return [_scored_copy(documents[result.index], result, usage) for result in results]


def _scored_copy(document: Document, result: RerankResult, usage: dict[str, Any] | None) -> Document:
    added: dict[str, Any] = {"relevance_score": result.score}
    if usage is not None:
        added["rerank_usage"] = dict(usage)  # the whole call's tokens, on each document
    return document.model_copy(update={"metadata": result_metadata(document.metadata, result, **added)})


def _ids(documents: Sequence[Document]) -> list[str]:
    """Each document's id for a trace; its position when it has none."""
    return [document.id or str(position) for position, document in enumerate(documents)]


def _as_dicts(results: list[RerankResult]) -> list[dict[str, Any]]:
    return [
        {"index": result.index, "relevance_score": result.score, **fallback_metadata(result)}
        for result in results
    ]


def _media(items: Sequence[object]) -> list[ItemMedia | None]:
    """The image of each item whose text is an image in base64 (see `base64_image`), else ``None``."""
    found: list[ItemMedia | None] = []
    for position, item in enumerate(items):
        text: object
        if isinstance(item, Document):
            text, field = item.page_content, "page_content"
        elif isinstance(item, Mapping):
            text, field = item.get("text", item.get("page_content")), "its text"
        else:
            text, field = item, "its text"
        image = base64_image(text) if isinstance(text, str) else None
        name = f"documents[{position}]"
        found.append(None if image is None else ItemMedia((image,), name=name, fields=f"an image in {field}"))
    return found
