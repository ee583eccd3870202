"""LlamaIndex, Haystack and LangChain rerank images and text together on a Qwen3-VL-Reranker.

Each framework runs for real (a node postprocessor, a Haystack Pipeline fed by its image converter,
a LangChain retriever chain over a vector store); each score is the one LocalReranker gives the
same image and text directly, and a text-only model still refuses an image without a text by name.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen_rerank import InvalidInputError, LocalReranker

# The models its module-scoped fixtures load are costly to load twice: one worker runs this module.
pytestmark = pytest.mark.xdist_group("vl-frameworks")

QUERY = "a red square"


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    return LocalReranker(tiny_vl_path, device="cpu")


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (48, 40), color)
    image.putpixel((3, 5), (255 - color[0], 90, 30))
    image.save(buffer, "PNG")
    return buffer.getvalue()


RED, BLUE = _png((230, 20, 20)), _png((20, 20, 230))


def _by_id(pairs: list[tuple[str, float]]) -> dict[str, float]:
    return dict(pairs)


# -- LlamaIndex ---------------------------------------------------------------------------------------


def test_llamaindex_reranks_image_nodes_with_text_nodes(
    vl_reranker: LocalReranker, tmp_path: Path, media: dict[str, str]
) -> None:
    from llama_index.core.schema import ImageNode, MediaResource, Node, NodeWithScore, TextNode

    from llamaindex_qwen_rerank import QwenRerank

    blue_path = tmp_path / "blue.png"
    blue_path.write_bytes(BLUE)
    nodes = [
        NodeWithScore(node=TextNode(id_="text", text="A red square on white paper."), score=0.9),
        NodeWithScore(node=ImageNode(id_="b64", image=base64.b64encode(RED).decode()), score=0.8),
        NodeWithScore(node=ImageNode(id_="path", image_path=str(blue_path), text="blue"), score=0.7),
        NodeWithScore(node=Node(id_="resource", image_resource=MediaResource(data=RED)), score=0.6),
    ]
    out = QwenRerank(reranker=vl_reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    expected = vl_reranker.score(
        QUERY,
        [
            "A red square on white paper.",
            {"image": RED},
            {"image": str(blue_path), "text": "blue"},
            {"image": RED},
        ],
    )
    got = _by_id([(n.node.node_id, n.score) for n in out])
    assert got == pytest.approx(
        dict(zip(["text", "b64", "path", "resource"], expected, strict=True)), abs=1e-6
    )
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)
    assert nodes[1].score == 0.8 and "relevance_score" not in nodes[1].node.metadata  # not mutated


def test_llamaindex_image_url_nodes_are_not_fetched_without_opt_in(vl_reranker: LocalReranker) -> None:
    from llama_index.core.schema import ImageNode, NodeWithScore

    from llamaindex_qwen_rerank import QwenRerank

    nodes = [NodeWithScore(node=ImageNode(id_="u", image_url="http://127.0.0.1:9/cat.png"), score=0.5)]
    with pytest.raises(InvalidInputError, match="allow_urls"):
        QwenRerank(reranker=vl_reranker).postprocess_nodes(nodes, query_str=QUERY)


# -- Haystack -----------------------------------------------------------------------------------------


def test_haystack_pipeline_ranks_converted_images_blobs_and_text(
    vl_reranker: LocalReranker, tmp_path: Path
) -> None:
    from haystack import Document, Pipeline
    from haystack.components.converters.image import ImageFileToDocument
    from haystack.dataclasses import ByteStream

    from haystack_qwen_rerank import QwenRanker

    red_path = tmp_path / "red.png"
    red_path.write_bytes(RED)
    pipeline = Pipeline()
    pipeline.add_component("images", ImageFileToDocument(store_full_path=True))
    pipeline.add_component("ranker", QwenRanker(reranker=vl_reranker, top_k=None))
    pipeline.connect("images.documents", "ranker.documents")
    result = pipeline.run({"images": {"sources": [str(red_path)]}, "ranker": {"query": QUERY}})
    (converted,) = result["ranker"]["documents"]
    assert converted.score == pytest.approx(vl_reranker.score(QUERY, [{"image": str(red_path)}])[0], abs=1e-6)

    blob = Document(id="blob", content="a photo", blob=ByteStream(BLUE, mime_type="image/png"))
    text = Document(id="text", content="A red square.")
    ranked = QwenRanker(reranker=vl_reranker).run(query=QUERY, documents=[blob, text])["documents"]
    expected = vl_reranker.score(QUERY, [{"image": BLUE, "text": "a photo"}, "A red square."])
    assert _by_id([(d.id, d.score) for d in ranked]) == pytest.approx(
        {"blob": expected[0], "text": expected[1]}, abs=1e-6
    )


# -- LangChain ----------------------------------------------------------------------------------------


def test_langchain_retriever_chain_reranks_base64_image_documents(vl_reranker: LocalReranker) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document
    from langchain_core.embeddings.fake import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_qwen_rerank import QwenRerank

    red64, blue64 = base64.b64encode(RED).decode(), base64.b64encode(BLUE).decode()
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(
        [
            Document(id="red", page_content=red64, metadata={"source": "red.png"}),
            Document(id="blue", page_content=f"data:image/png;base64,{blue64}"),
            Document(id="text", page_content="A red square."),
        ]
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=QwenRerank(reranker=vl_reranker, top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": 3}),
    )
    docs = retriever.invoke(QUERY)
    expected = vl_reranker.score(QUERY, [{"image": RED}, {"image": BLUE}, "A red square."])
    assert _by_id([(d.id or "", d.metadata["relevance_score"]) for d in docs]) == pytest.approx(
        {"red": expected[0], "blue": expected[1], "text": expected[2]}, abs=1e-6
    )
    assert {d.page_content for d in docs} == {red64, f"data:image/png;base64,{blue64}", "A red square."}


# -- a text-only model --------------------------------------------------------------------------------


def test_a_text_model_scores_a_captioned_image_on_its_caption_and_refuses_a_bare_one(
    tiny_reranker: Any,
) -> None:
    from haystack import Document
    from haystack.dataclasses import ByteStream

    from haystack_qwen_rerank import QwenRanker

    ranker = QwenRanker(reranker=tiny_reranker)
    captioned = Document(id="c", content="a red square", blob=ByteStream(RED, mime_type="image/png"))
    (scored,) = ranker.run(query=QUERY, documents=[captioned])["documents"]
    assert scored.score == tiny_reranker.score(QUERY, ["a red square"])[0]
    bare = Document(id="bare", blob=ByteStream(RED, mime_type="image/png"))
    with pytest.raises(InvalidInputError, match=r"documents\[1\] \(id 'bare'\) has no text, only blob"):
        ranker.run(query=QUERY, documents=[captioned, bare])
