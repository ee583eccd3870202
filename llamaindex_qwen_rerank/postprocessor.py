"""``QwenRerank``: a LlamaIndex node postprocessor backed by Qwen3-Reranker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.callbacks.base import EventContext
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # re-exported implicitly
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    MediaResource,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
)
from pydantic import Field

from qwen_rerank import DEFAULT_MODEL, InvalidInputError, RerankResult
from qwen_rerank.integrations.adapters import RERANK_KEYS, ItemMedia, rerank_inputs, result_metadata
from qwen_rerank.integrations.fallback import RerankCall
from qwen_rerank.integrations.fields import RankingFields

__all__ = ["QwenRerank"]

dispatcher = get_dispatcher(__name__)


class QwenRerank(RankingFields, BaseNodePostprocessor):
    """Reorders retrieved nodes by relevance with Qwen3-Reranker, locally or on vLLM.

    Each node is scored on ``node.get_content(metadata_mode=self.metadata_mode)``
    (``MetadataMode.EMBED`` by default). Returns new ``NodeWithScore`` objects,
    best first, with ``score`` the relevance in [0, 1] and a copy of the node
    (same ``node_id``, deep-copied metadata; a value that cannot be deep-copied
    is shared). The nodes passed in are never modified.

    Without ``base_url`` the model runs in this process (``pip install
    "qwen-rerank[local]"``) and is loaded on the first call; with ``base_url``
    it is scored by a vLLM server and torch is never imported.

    Example:
        <!-- not run by the tests: index is your VectorStoreIndex -->
        ```python
        from llamaindex_qwen_rerank import QwenRerank

        engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[QwenRerank(top_n=5)])
        response = engine.query("What is the capital of China?")
        ```

    Changing a backend field (``model``, ``base_url``, ``device``...), by
    assignment or ``model_copy(update=...)``, rebuilds the backend; the other
    fields are read on every call. ``close()`` / ``aclose()`` release a backend
    the postprocessor built. Both rerank events carry the span of the call and
    the model actually used.
    """

    keep_retrieval_score: bool = Field(
        default=False,
        description="Keep each node's incoming (retrieval) score in the returned node's "
        "metadata['retrieval_score'].",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="What of each node is scored: its text plus the metadata this mode shows "
        "(MetadataMode.EMBED, the default), or the text alone (MetadataMode.NONE).",
    )

    @classmethod
    def class_name(cls) -> str:
        return "QwenRerank"

    @dispatcher.span
    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, listed, texts = self._inputs(nodes, query_bundle)
        if not listed:
            return []
        call = RerankCall.begin(self._current_backend(), self.on_error)
        with self._reranking(call, listed, query_bundle, query) as event:
            results = call.rerank(query, texts, ids=_ids(listed), media=_media(listed), **self._settings())
            return self._finish(listed, results, event, call.usage())

    @dispatcher.span
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        query, listed, texts = self._inputs(nodes, query_bundle)
        if not listed:
            return []
        call = await RerankCall.abegin(self._current_backend(), self.on_error)
        with self._reranking(call, listed, query_bundle, query) as event:
            results = await call.arerank(
                query, texts, ids=_ids(listed), media=_media(listed), **self._settings()
            )
            return self._finish(listed, results, event, call.usage())

    def _inputs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[NodeWithScore], list[str]]:
        if query_bundle is None:
            raise InvalidInputError("Missing query bundle in extra info.")
        return rerank_inputs(query_bundle.query_str, nodes, self._node_text, "nodes")

    def _settings(self) -> dict[str, Any]:
        return {
            "top_n": self.top_n,
            "score_threshold": self.score_threshold,
            "instruction": self.instruction,
            "on_error": self.on_error,
            "trace_content": self.trace_content,
        }

    @contextmanager
    def _reranking(
        self,
        call: RerankCall,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None,
        query: str,
    ) -> Iterator[EventContext]:
        """The instrumentation start event and the RERANKING callback event around one rerank.

        Without a backend (``on_error="passthrough"`` after it failed to build) they name the
        model setting.
        """
        model = call.model(str(self.model or DEFAULT_MODEL))
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self.top_n if self.top_n is not None else len(nodes),
                model_name=model,
            )
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model,
                EventPayload.QUERY_STR: query,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            yield event

    def _finish(
        self,
        nodes: list[NodeWithScore],
        results: list[RerankResult],
        event: EventContext,
        usage: dict[str, int | None] | None,
    ) -> list[NodeWithScore]:
        """New scored nodes in result order, and the events that close the rerank.

        The RERANKING event's end payload carries ``"usage"``: the tokens a server
        reported for the call (``None`` for a local model).
        """
        new_nodes = [self._scored_copy(nodes[result.index], result) for result in results]
        event.on_end(payload={EventPayload.NODES: new_nodes, "usage": usage})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes

    def _scored_copy(self, item: NodeWithScore, result: RerankResult) -> NodeWithScore:
        metadata = result_metadata(item.node.metadata, result)
        if self.keep_retrieval_score:
            metadata["retrieval_score"] = item.score
        try:
            node = item.node.model_copy(update={"metadata": {}}, deep=True)
        except Exception:  # a field other than metadata that cannot be deep-copied
            node = item.node.model_copy()
        # New lists and dict: the caller's node shares none of them, so it never changes.
        node.metadata = metadata
        added = [key for key in metadata if key in RERANK_KEYS]
        # What the reranker read is for the caller, not for the LLM or the embedder.
        node.excluded_llm_metadata_keys = _excluding(item.node.excluded_llm_metadata_keys, added)
        node.excluded_embed_metadata_keys = _excluding(item.node.excluded_embed_metadata_keys, added)
        # Not reranked (on_error="passthrough" after a backend failure): the retrieval score stays.
        return NodeWithScore(node=node, score=result.score if result.reranked else item.score)

    def _node_text(self, item: object) -> object:
        if not isinstance(item, NodeWithScore):
            raise InvalidInputError(f"must be a NodeWithScore, got {type(item).__name__}.")
        node = item.node
        if not node.get_content(metadata_mode=MetadataMode.NONE) and _node_media(node, "") is not None:
            return ""  # scored on its image or video by a multimodal model, else refused by name
        return node.get_content(metadata_mode=self.metadata_mode)


def _excluding(keys: list[str], added: list[str]) -> list[str]:
    """A new list: ``keys``, then each of ``added`` not in it."""
    return [*keys, *(key for key in added if key not in keys)]


def _ids(nodes: list[NodeWithScore]) -> list[str]:
    return [item.node.node_id for item in nodes]


def _media(nodes: list[NodeWithScore]) -> list[ItemMedia | None]:
    return [_node_media(item.node, f"nodes[{position}]") for position, item in enumerate(nodes)]


def _node_media(node: BaseNode, position: str) -> ItemMedia | None:
    """The images and video of a node: an ``ImageNode``'s image (base64, path or URL), a ``Node``'s
    image and video resources; ``None`` when it has none. Audio is kept as a field that no model reads."""
    images: list[Any] = []
    videos: list[Any] = []
    fields = []
    if isinstance(node, ImageNode):
        mime = node.image_mimetype or "image/png"
        for field, value in (
            ("image", f"data:{mime};base64,{node.image}" if node.image else None),
            ("image_path", node.image_path),
            ("image_url", node.image_url),
        ):
            if value:
                images.append(value)
                fields.append(field)
    for field, target in (("image_resource", images), ("video_resource", videos)):
        source = _resource(getattr(node, field, None))
        if source is not None:
            target.append(source)
            fields.append(field)
    if getattr(node, "audio_resource", None) is not None:
        fields.append("audio_resource")
    if not fields:
        return None
    name = f"{position} ({type(node).__name__} {node.node_id!r})"
    return ItemMedia(tuple(images), tuple(videos), name=name, fields=", ".join(fields))


def _resource(resource: MediaResource | None) -> Any:
    """A media resource as a source `qwen_rerank.media` reads: its data, path or URL."""
    if resource is None:
        return None
    if resource.data:
        mime = resource.mimetype or "image/png"
        return f"data:{mime};base64,{resource.data.decode('ascii')}"
    if resource.path is not None:
        return str(resource.path)
    return str(resource.url) if resource.url is not None else None
