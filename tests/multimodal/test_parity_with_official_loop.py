"""Float32 parity with the official Qwen3-VL-Reranker loop on the tiny checkpoint.

Each case is scored by VLScorer (all documents in one call, batched) and by the oracle
(tests/multimodal/reference_vl.py, one pair at a time); every score agrees within 1e-5. The cases
cover text-only, image-only, mixed and video documents, images stretched to the least pixels and
shrunk under the most, a video thinned to max_frames, and prompts cut by truncation, in the
document and in the query. Each case also checks that it reaches what it is named for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_rerank.local._vl import VLScorer
from qwen_rerank.local._vl_pixels import VisionSettings
from tests.multimodal.reference_vl import OfficialVLReranker, Trace

# The models its module-scoped fixtures load are costly to load twice: one worker runs this module.
pytestmark = pytest.mark.xdist_group("vl-oracle-parity")

LONG = "The quick brown fox jumps over the lazy dog. " * 12


def _cases(m: dict[str, str]) -> dict[str, dict[str, Any]]:
    frames3 = [m[f"frame{k}"] for k in range(3)]
    frames7 = [m[f"frame{k}"] for k in range(7)]
    return {
        "text_only": dict(
            query={"text": "What animal jumps?"},
            documents=[{"text": "A fox jumps over a dog."}, {"text": "Tax law of 1999."}, {"text": ""}, {}],
        ),
        "image_only": dict(
            query={"text": "a chart"},
            documents=[
                {"image": m["small"]},
                {"image": m["tiny"]},
                {"image": m["alpha"]},
                {"image": m["big"]},
            ],
        ),
        "pixel_bounds": dict(
            settings={"min_pixels": 64 * 32 * 32, "max_pixels": 80 * 32 * 32},
            query={"text": "q"},
            documents=[{"image": m["big"]}, {"image": m["tiny"]}, {"image": m["small"]}],
        ),
        "mixed": dict(
            query={"text": "find the red plot", "image": m["small"]},
            documents=[
                {"text": "caption here", "image": m["alpha"]},
                {"image": [m["tiny"], m["small"]], "text": ["one", "two"]},
                {"text": "only text"},
            ],
        ),
        "video": dict(
            query={"text": "a moving thing"},
            documents=[{"video": frames3}, {"video": frames3, "text": "clip", "image": m["tiny"]}],
        ),
        "video_sampled": dict(
            settings={"max_frames": 4},
            query={"text": "a moving thing"},
            documents=[{"video": frames7}, {"video": [frames3, frames7]}],
        ),
        "truncation": dict(
            max_length=120,
            query={"text": "fox"},
            documents=[{"text": LONG}, {"text": LONG, "image": m["small"]}, {"text": "short"}],
        ),
        "truncation_in_query": dict(
            max_length=60,
            query={"text": LONG, "image": m["tiny"]},
            documents=[{"text": LONG}, {"image": m["small"]}],
        ),
    }


@pytest.fixture(scope="module")
def oracles(tiny_vl_path: Path) -> dict[tuple[Any, ...], OfficialVLReranker]:
    return {}


def _oracle(
    cache: dict[tuple[Any, ...], OfficialVLReranker], path: Path, case: dict[str, Any]
) -> OfficialVLReranker:
    settings = case.get("settings", {})
    key = (case.get("max_length", 10240), tuple(sorted(settings.items())))
    if key not in cache:
        cache[key] = OfficialVLReranker(str(path), max_length=key[0], **settings)
    return cache[key]


CASES = ["text_only", "image_only", "pixel_bounds", "mixed", "video", "video_sampled", "truncation"]
CASES += ["truncation_in_query"]


@pytest.mark.parametrize("name", CASES)
def test_scores_match_the_official_loop(
    name: str, media: dict[str, str], tiny_vl_path: Path, vl_scorer: VLScorer, oracles: dict[Any, Any]
) -> None:
    case = _cases(media)[name]
    scorer = VLScorer(
        vl_scorer.model,
        vl_scorer.tokenizer,
        geometry=vl_scorer.geometry,
        settings=VisionSettings(**case.get("settings", {})),
        max_length=case.get("max_length", 10240),
    )
    ours = scorer.score(case["query"], case["documents"])
    oracle = _oracle(oracles, tiny_vl_path, case)
    expected, traces = zip(*(oracle.score_pair(case["query"], doc) for doc in case["documents"]), strict=True)
    assert ours == pytest.approx(list(expected), abs=1e-5)
    _check_coverage(name, case, list(traces))


def _check_coverage(name: str, case: dict[str, Any], traces: list[Trace]) -> None:
    """The case exercises what it is named for."""
    if name == "truncation":
        assert (
            traces[0].untruncated_length > case["max_length"]
            and traces[1].untruncated_length > case["max_length"]
        )
        assert traces[2].untruncated_length <= case["max_length"]
    if name == "truncation_in_query":
        assert all(trace.untruncated_length > case["max_length"] for trace in traces)
    if name == "pixel_bounds":
        pixels = [t * h * w * 16 * 16 for trace in traces for t, h, w in trace.image_grids]
        assert pixels[0] <= 80 * 32 * 32 < 500 * 400  # big: shrunk under max_pixels
        assert pixels[1] >= 64 * 32 * 32 > 20 * 30  # tiny: stretched to min_pixels
    if name == "video_sampled":
        # 7 frames thinned to 4 make two temporal patches (all 7, padded to 8, would make four)
        assert [grid[0] for grid in traces[0].video_grids] == [2]
    if name in ("video", "video_sampled"):
        assert all(trace.video_grids for trace in traces)
    if name == "image_only":
        assert traces[0].image_grids == [[1, 4, 6]]  # 70 x 90 resized to 64 x 96 by PIL's bicubic
