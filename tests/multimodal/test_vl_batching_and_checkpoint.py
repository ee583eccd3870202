"""The tiny Qwen3-VL checkpoint loads offline, and batching never changes a score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoImageProcessor, AutoTokenizer

from qwen_rerank.local._vl import VLScorer, is_vl_checkpoint
from qwen_rerank.testing import make_tiny_vl_reranker


def test_the_tiny_checkpoint_is_cached_and_carries_the_vision_tokens(tiny_vl_path: Path) -> None:
    assert make_tiny_vl_reranker() == tiny_vl_path
    config = json.loads((tiny_vl_path / "config.json").read_text(encoding="utf-8"))
    assert is_vl_checkpoint(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_path)
    for token, expected in [
        ("<|vision_start|>", 151652),
        ("<|image_pad|>", 151655),
        ("<|video_pad|>", 151656),
    ]:
        assert tokenizer.convert_tokens_to_ids(token) == expected
        assert (
            config[
                {151652: "vision_start_token_id", 151655: "image_token_id", 151656: "video_token_id"}[
                    expected
                ]
            ]
            == expected
        )
    # Without torchvision, transformers still reads the processor config (its PIL image processor).
    assert AutoImageProcessor.from_pretrained(tiny_vl_path).patch_size == 16


def test_the_same_arguments_give_the_same_weights(tmp_path: Path, vl_scorer: VLScorer) -> None:
    again = VLScorer.from_pretrained(make_tiny_vl_reranker(tmp_path / "copy"))
    documents = ["a", {"text": "b"}]
    assert again.score("q", documents) == vl_scorer.score("q", documents)


def test_batching_and_request_grouping_never_change_a_score(
    vl_scorer: VLScorer, media: dict[str, str]
) -> None:
    frames = [media[f"frame{k}"] for k in range(3)]
    requests = [
        ("what is shown?", ["plain", {"image": media["small"]}, {"video": frames, "text": "clip"}, {}]),
        ({"text": "a chart", "image": media["tiny"]}, [{"image": media["alpha"]}, "text only"]),
    ]
    together = vl_scorer.score_batch(requests)
    alone = [vl_scorer.score(query, documents) for query, documents in requests]
    one_by_one = VLScorer(
        vl_scorer.model, vl_scorer.tokenizer, geometry=vl_scorer.geometry, max_batch_tokens=1
    )
    single = one_by_one.score_batch(requests)
    for a, b, c in zip(together, alone, single, strict=True):
        assert a == pytest.approx(b, abs=1e-5) and a == pytest.approx(c, abs=1e-5)
    assert [len(scores) for scores in together] == [4, 2]


def test_a_str_document_scores_as_its_text_dict(vl_scorer: VLScorer) -> None:
    assert vl_scorer.score("q", ["hello"]) == pytest.approx(
        vl_scorer.score({"text": "q"}, [{"text": "hello"}])
    )


def test_progress_counts_every_pair(vl_scorer: VLScorer) -> None:
    seen: list[list[int]] = []
    vl_scorer.score_batch([("q", ["a", "b"]), ("r", ["c"])], progress=seen.append)
    assert sorted(k for batch in seen for k in batch) == [0, 0, 1]
