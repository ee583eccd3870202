"""Video files and URLs score as the official Qwen3-VL-Reranker loop scores them (float32, within 1e-5).

The oracle (reference_vl.py) decodes a file as torchvision's ``read_video`` does, samples it with
qwen-vl-utils' ``smart_nframes`` and ``linspace`` rule, resizes it within the bounds of a file
(no ``total_pixels``), and stamps it from the frame indices and the stream's frame rate. The videos
are written in the test with PyAV: lossless RGB (FFV1) of odd sizes, so resizing matters, and H.264
with B-frames. Each case also checks that it reaches what it is named for.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import LocalReranker, MissingDependencyError
from qwen_rerank.local._vl import VLScorer
from qwen_rerank.local._vl_pixels import VisionSettings
from tests.helpers import FileServer
from tests.multimodal.reference_vl import OfficialVLReranker, Trace

# The models its module-scoped fixtures load are costly to load twice: one worker runs this module.
pytestmark = pytest.mark.xdist_group("vl-video-parity")


def _cases(m: dict[str, str], v: dict[str, str]) -> dict[str, dict[str, Any]]:
    frames3 = [m[f"frame{k}"] for k in range(3)]
    return {
        "file_mixed": dict(
            query={"text": "a moving thing"},
            documents=[
                {"video": v["clip"]},
                {"video": v["clip"], "text": "a clip", "image": m["tiny"]},
                {"video": [v["clip"], v["h264"]]},
                {"video": frames3, "text": "frames"},
                {"text": "only text"},
                {"image": m["small"]},
            ],
        ),
        "file_sampled": dict(
            settings={"fps": 2.0, "max_frames": 7},
            query={"text": "a moving thing"},
            documents=[{"video": v["long"]}, {"video": v["h264"], "text": "h264"}],
        ),
        "file_in_query": dict(
            query={"video": v["h264"], "text": "like this"},
            documents=[{"text": "a text"}, {"image": m["small"]}, {"video": v["clip"]}],
        ),
    }


@pytest.fixture(scope="module")
def oracles() -> dict[tuple[Any, ...], OfficialVLReranker]:
    return {}


def _oracle(
    cache: dict[tuple[Any, ...], OfficialVLReranker], path: Path, settings: dict[str, Any]
) -> OfficialVLReranker:
    key = tuple(sorted(settings.items()))
    if key not in cache:
        cache[key] = OfficialVLReranker(str(path), **settings)
    return cache[key]


@pytest.mark.parametrize("name", ["file_mixed", "file_sampled", "file_in_query"])
def test_video_files_score_as_the_official_loop(
    name: str,
    media: dict[str, str],
    videos: dict[str, str],
    tiny_vl_path: Path,
    vl_scorer: VLScorer,
    oracles: dict[Any, Any],
) -> None:
    case = _cases(media, videos)[name]
    settings = case.get("settings", {})
    scorer = VLScorer(
        vl_scorer.model, vl_scorer.tokenizer, geometry=vl_scorer.geometry, settings=VisionSettings(**settings)
    )
    ours = scorer.score(case["query"], case["documents"])
    oracle = _oracle(oracles, tiny_vl_path, settings)
    expected, traces = zip(*(oracle.score_pair(case["query"], doc) for doc in case["documents"]), strict=True)
    assert ours == pytest.approx(list(expected), abs=1e-5)
    _check_coverage(name, list(traces))


def _check_coverage(name: str, traces: list[Trace]) -> None:
    """The case exercises what it is named for."""
    if name == "file_mixed":
        # clip: 24 frames at 8 a second, 3 s at 1 a second, raised to the least 4 frames: 0, 8, 15, 23
        assert traces[0].video_stamps == [[0.5, 2.375]]
        # 100 x 70 is stretched to the least pixels of a video frame (128 tokens), to 448 x 320
        assert traces[0].video_grids == [[2, 20, 28]]
        assert len(traces[2].video_grids) == 2 and traces[3].video_grids and traces[1].image_grids
    if name == "file_sampled":
        # long: 10 s at 2 a second is 20 frames, cut to max_frames 7 rounded down to 6: 3 temporal patches
        assert [grid[0] for grid in traces[0].video_grids] == [3]
        # h264: 30 frames at 12 a second, 2.5 s at 2 a second is 5 frames, rounded down to 4: 0, 10, 19, 29
        assert traces[1].video_stamps == [[5 / 12, 2.0]]
    if name == "file_in_query":
        assert all(trace.video_grids for trace in traces)


def test_a_video_url_scores_as_its_file_through_local_reranker(
    tiny_vl_path: Path,
    videos: dict[str, str],
    video_server: FileServer,
    oracles: dict[Any, Any],
) -> None:
    reranker = LocalReranker(tiny_vl_path, device="cpu", allow_urls=True)
    documents: list[Any] = [{"video": video_server.url, "text": "a clip"}, "a text"]
    results = reranker.rerank({"text": "a moving thing"}, documents)
    oracle = _oracle(oracles, tiny_vl_path, {})
    expected = [
        oracle.score_pair({"text": "a moving thing"}, {"video": videos["clip"], "text": "a clip"})[0],
        oracle.score_pair({"text": "a moving thing"}, {"text": "a text"})[0],
    ]
    assert sorted((r.index, r.score) for r in results) == [
        (0, pytest.approx(expected[0], abs=1e-5)),
        (1, pytest.approx(expected[1], abs=1e-5)),
    ]
    assert len(video_server.hits) == 1


def test_without_pyav_a_video_file_names_the_extra(
    vl_scorer: VLScorer, videos: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` finds when PyAV is not installed
    with pytest.raises(MissingDependencyError, match=r"qwen-rerank\[video\]"):
        vl_scorer.score("q", [{"video": videos["clip"]}])
