"""``QwenRerank``: a LlamaIndex node postprocessor backed by Qwen3-Reranker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base import EventContext
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # re-exported implicitly
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator

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

dispatcher = get_dispatcher(__name__)


def _secret_from_env() -> SecretStr | None:
    key = api_key_from_env()
    return SecretStr(key) if key is not None else None


class QwenRerank(BaseNodePostprocessor):
    """Reorders retrieved nodes by relevance with Qwen3-Reranker, locally or on vLLM.

    Each node is scored on ``node.get_content(metadata_mode=MetadataMode.EMBED)``.
    Returns new ``NodeWithScore`` objects, best first, with ``score`` the
    relevance in [0, 1] and a copy of the node (same ``node_id``, deep-copied
    metadata). The nodes passed in are never modified.

    Without ``base_url`` the model runs in this process (``pip install
    "qwen-rerank[local]"``) and is loaded on the first call; with ``base_url``
    it is scored by a vLLM server and torch is never imported.

    Example:
        .. code-block:: python

            from llamaindex_qwen_rerank import QwenRerank

            engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[QwenRerank(top_n=5)])
            response = engine.query("What is the capital of China?")

    Backend settings (``model``, ``base_url``, ``device``...) are read once,
    when the backend is built; ``top_n``, ``score_threshold``, ``instruction``
    and ``keep_retrieval_score`` are read on every call.
    """

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Hub id or local folder of the checkpoint to run; with base_url, the model name "
        "to ask the server for (left at the default, the server's own model is used).",
    )
    base_url: str | list[str] | None = Field(
        default=None,
        description="URL of a vLLM server (or a list of replicas). When set, the remote backend is used.",
    )
    api_key: SecretStr | None = Field(
        default_factory=_secret_from_env,
        exclude=True,
        description="API key of the vLLM server; defaults to the QWEN_RERANK_API_KEY environment "
        "variable. Never shown in the repr nor serialised.",
    )
    top_n: int | None = Field(default=3, description="Number of nodes to return; None returns them all.")
    score_threshold: float | None = Field(
        default=None, description="Keep only nodes whose score is at least this; None keeps all."
    )
    instruction: str | None = Field(
        default=None,
        description='Tells the model what "relevant" means for your task; None uses the backend\'s '
        "(by default qwen_rerank.DEFAULT_INSTRUCTION).",
    )
    keep_retrieval_score: bool = Field(
        default=False,
        description="Keep each node's incoming (retrieval) score in the returned node's "
        "metadata['retrieval_score'].",
    )
    reranker: Reranker | None = Field(
        default=None,
        exclude=True,
        description="A ready backend, so that one loaded model serves several postprocessors (and "
        "LangChain compressors). No other backend setting may be given with it.",
    )
    device: str | None = Field(
        default=None,
        description="Local backend only: 'cuda', 'cuda:1', 'mps' or 'cpu'; None picks one.",
    )
    dtype: str | None = Field(
        default=None,
        description="Local backend only: 'float32', 'bfloat16' or 'float16'; None picks one.",
    )
    max_length: int | None = Field(
        default=None,
        description="Most tokens one prompt may take; longer documents are truncated from their end.",
    )
    timeout: float | None = Field(
        default=None, description="Remote backend only: seconds to wait for the server."
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further keyword arguments for the backend's constructor (LocalReranker or "
        'VLLMReranker), e.g. {"max_batch_tokens": 8192}.',
    )

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

    @classmethod
    def class_name(cls) -> str:
        return "QwenRerank"

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, listed, texts = self._inputs(nodes, query_bundle)
        if not listed:
            return []
        backend = self._backend.get()
        with self._reranking(listed, query_bundle, query) as event:
            results = backend.rerank(query, texts, **self._settings())
            return self._finish(listed, results, event)

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, listed, texts = self._inputs(nodes, query_bundle)
        if not listed:
            return []
        backend = await self._backend.aget()
        with self._reranking(listed, query_bundle, query) as event:
            results = await backend.arerank(query, texts, **self._settings())
            return self._finish(listed, results, event)

    def _inputs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[NodeWithScore], list[str]]:
        if query_bundle is None:
            raise InvalidInputError("Missing query bundle in extra info.")
        return rerank_inputs(query_bundle.query_str, nodes, _embed_text, "nodes")

    def _settings(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "score_threshold": self.score_threshold, "instruction": self.instruction}

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str
    ) -> Iterator[EventContext]:
        """The instrumentation start event and the RERANKING callback event around one rerank."""
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self.top_n if self.top_n is not None else len(nodes),
                model_name=self.model,
            )
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            yield event

    def _finish(
        self, nodes: list[NodeWithScore], results: list[RerankResult], event: EventContext
    ) -> list[NodeWithScore]:
        """New scored nodes in result order, and the events that close the rerank."""
        new_nodes = [self._scored_copy(nodes[result.index], result) for result in results]
        event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes

    def _scored_copy(self, item: NodeWithScore, result: RerankResult) -> NodeWithScore:
        node = item.node.model_copy(deep=True)
        if self.keep_retrieval_score:
            node.metadata["retrieval_score"] = item.score
        cut = cut_metadata(result)
        node.metadata.update(cut)
        # What the reranker read is for the caller, not for the LLM or the embedder.
        for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
            excluded.extend(key for key in cut if key not in excluded)
        return NodeWithScore(node=node, score=result.score)


# Where LlamaIndex nodes keep non-text content (ImageNode, and Node's media resources).
_MEDIA_FIELDS = ("image", "image_path", "image_url", "image_resource", "audio_resource", "video_resource")


def _embed_text(item: object) -> object:
    if not isinstance(item, NodeWithScore):
        raise InvalidInputError(f"must be a NodeWithScore, got {type(item).__name__}.")
    node = item.node
    if not node.get_content(metadata_mode=MetadataMode.NONE):
        media = [name for name in _MEDIA_FIELDS if getattr(node, name, None)]
        if media:
            raise InvalidInputError(
                f"({type(node).__name__} {node.node_id!r}) has no text, only {', '.join(media)}; "
                "qwen-rerank scores text. Give the node a text (e.g. a caption) or leave it out."
            )
    return node.get_content(metadata_mode=MetadataMode.EMBED)
