"""LocalReranker on a Qwen3-VL-Reranker checkpoint: images, video and text through the public API.

The scores are those of the official loop (the oracle of reference_vl.py, float32, within 1e-5),
whichever call carries them (score, rerank, score_many, score_pairs, async); a text-only model
refuses a multimodal item with our error, and a text-only call on it keeps its text scores.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import qwen_rerank
from qwen_rerank import InvalidInputError, LocalReranker
from qwen_rerank.media import MultimodalContent
from tests.multimodal.reference_vl import OfficialVLReranker

# The models its module-scoped fixtures load are costly to load twice: one worker runs this module.
pytestmark = pytest.mark.xdist_group("vl-local-reranker")

VL_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    """A LocalReranker on the tiny Qwen3-VL checkpoint, shared by the module: never change it."""
    return LocalReranker(tiny_vl_path, device="cpu")


@pytest.fixture(scope="module")
def oracle(tiny_vl_path: Path) -> OfficialVLReranker:
    return OfficialVLReranker(str(tiny_vl_path))


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):
        image.putpixel((x, x % size[1]), (255 - color[0], 40, 90))
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _official(item: Any) -> dict[str, Any]:
    """``item`` as the official code takes it: a dict, with bytes opened as a PIL image."""
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, MultimodalContent):
        raise TypeError("give the oracle the dict form")
    image = item.get("image")
    if isinstance(image, bytes):
        return {**item, "image": Image.open(io.BytesIO(image))}
    return dict(item)


def _expected(oracle: OfficialVLReranker, query: Any, documents: list[Any]) -> list[float]:
    return [oracle.score_pair(_official(query), _official(doc))[0] for doc in documents]


def test_it_knows_the_checkpoint_and_takes_its_defaults(vl_reranker: LocalReranker) -> None:
    assert vl_reranker.multimodal
    assert vl_reranker.instruction == VL_INSTRUCTION
    assert vl_reranker.max_length == 10240


def test_mixed_documents_score_as_the_official_loop(
    vl_reranker: LocalReranker, oracle: OfficialVLReranker, media: dict[str, str]
) -> None:
    clip = {"video": [media["frame0"], media["frame1"]], "text": "a clip"}
    documents: list[Any] = [
        "a red chart",
        {"image": media["small"]},
        {"text": "caption", "image": _png((200, 10, 10))},
        clip,
    ]
    scores = vl_reranker.score("which chart is red?", [*documents[:3], MultimodalContent(**clip)])
    assert scores == pytest.approx(_expected(oracle, "which chart is red?", documents), abs=1e-5)


def test_an_image_query_scores_as_the_official_loop(
    vl_reranker: LocalReranker, oracle: OfficialVLReranker, media: dict[str, str]
) -> None:
    query = {"image": media["alpha"]}
    documents = ["a chart", {"image": media["tiny"], "text": "small"}]
    assert vl_reranker.score(query, documents) == pytest.approx(_expected(oracle, query, documents), abs=1e-5)


def test_rerank_orders_by_score_and_keeps_each_index(
    vl_reranker: LocalReranker, media: dict[str, str]
) -> None:
    documents: list[Any] = ["text", {"image": media["small"]}, {"image": media["big"]}, "other"]
    scores = vl_reranker.score("q", documents)
    results = vl_reranker.rerank("q", documents, top_n=3)
    assert len(results) == 3
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    for result in results:
        assert result.score == pytest.approx(scores[result.index], abs=1e-6)
        if isinstance(documents[result.index], str):
            assert result.document == documents[result.index]
        else:
            assert isinstance(result.document, MultimodalContent) and result.document.images


def test_score_many_pairs_and_async_agree_with_score(
    vl_reranker: LocalReranker, media: dict[str, str]
) -> None:
    image = {"image": _png((0, 120, 250))}
    first = ("blue", ["sky", image, {"image": media["tiny"]}])
    second = ({"image": media["small"]}, ["a plot", image])
    many = vl_reranker.score_many([first, second])
    assert many[0] == pytest.approx(vl_reranker.score(*first), abs=1e-5)
    assert many[1] == pytest.approx(vl_reranker.score(*second), abs=1e-5)
    pairs = vl_reranker.score_pairs([("blue", image), (second[0], "a plot")])
    assert pairs == pytest.approx([many[0][1], many[1][0]], abs=1e-5)
    assert asyncio.run(vl_reranker.ascore(*first)) == pytest.approx(many[0], abs=1e-5)


def test_the_same_image_twice_ties_exactly(vl_reranker: LocalReranker) -> None:
    data = _png((30, 200, 30))
    scores = vl_reranker.score("green", [{"image": data}, "x", {"image": data}])
    assert scores[0] == scores[2]


def test_a_text_only_call_keeps_the_text_scores_of_the_vl_model(
    vl_reranker: LocalReranker, oracle: OfficialVLReranker
) -> None:
    documents = ["A fox jumps over a dog.", "Tax law of 1999."]
    assert vl_reranker.score("What animal jumps?", documents) == pytest.approx(
        _expected(oracle, "What animal jumps?", documents), abs=1e-5
    )


def test_a_text_model_refuses_an_image_with_our_error(tiny_reranker: LocalReranker) -> None:
    assert not tiny_reranker.multimodal
    with pytest.raises(InvalidInputError, match=r"documents\[1\].*text only.*Qwen3-VL-Reranker"):
        tiny_reranker.rerank("q", ["text", {"image": b"\x89PNG"}])
    with pytest.raises(InvalidInputError, match=r"query.*text only"):
        tiny_reranker.score({"text": "q"}, ["text"])
    with pytest.raises(InvalidInputError, match=r"requests\[0\]: documents\[0\].*text only"):
        tiny_reranker.score_many([("q", [MultimodalContent(text="t")])])
    with pytest.raises(InvalidInputError, match=r"pairs\[0\].*text only"):
        tiny_reranker.score_pairs([("q", {"image": "x.png"})])


def test_a_broken_image_names_its_document_whatever_on_error(vl_reranker: LocalReranker) -> None:
    with pytest.raises(InvalidInputError, match=r"documents\[1\]'s image\[0\]"):
        vl_reranker.rerank("q", ["fine", {"image": b"not an image"}], on_error="passthrough")


def test_an_image_file_changed_in_place_is_scored_afresh_with_the_cache_on(
    tiny_vl_path: Path, tmp_path: Path
) -> None:
    reranker = LocalReranker(tiny_vl_path, device="cpu", cache_size=100)
    path = tmp_path / "page.png"
    red, blue = _png((250, 0, 0)), _png((0, 0, 250))
    path.write_bytes(red)
    first = reranker.score("q", [{"image": str(path)}, {"image": red}])
    path.write_bytes(blue)
    second = reranker.score("q", [{"image": str(path)}, {"image": red}])
    assert first[0] == pytest.approx(first[1], abs=1e-6)
    assert second[0] == pytest.approx(reranker.score("q", [{"image": blue}])[0], abs=1e-6)
    assert second[1] == first[1]


def test_chunk_mode_is_refused_for_a_vl_checkpoint(tiny_vl_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="long_documents='truncate'"):
        LocalReranker(tiny_vl_path, device="cpu", long_documents="chunk")


def test_a_url_needs_allow_urls(vl_reranker: LocalReranker) -> None:
    with pytest.raises(InvalidInputError, match="allow_urls"):
        vl_reranker.score("q", [{"image": "http://127.0.0.1:9/cat.png"}])


def test_the_factory_builds_a_multimodal_reranker(tiny_vl_path: Path, media: dict[str, str]) -> None:
    with qwen_rerank.create_reranker(str(tiny_vl_path), device="cpu") as reranker:
        assert reranker.multimodal
        assert len(reranker.score("q", [{"image": media["tiny"]}])) == 1
