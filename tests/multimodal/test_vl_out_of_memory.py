"""LocalReranker on a Qwen3-VL checkpoint, out of memory: the batch is halved and the scores kept, as on
the text path; a pair too big alone is named; other errors are not retried. The fault is torch's own
OutOfMemoryError, raised by a forward pre-hook on the model's input embeddings (tests/local/fast_path.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from qwen_rerank import LocalReranker, OutOfMemoryError
from tests.local.fast_path import one_pass_at_a_time, recorded_batches

# The models its module-scoped fixtures load are costly to load twice: one worker runs this module.
pytestmark = pytest.mark.xdist_group("vl-out-of-memory")

QUERY = {"text": "a chart of sales"}


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    """LocalReranker on the tiny Qwen3-VL checkpoint, with a budget large enough for many pairs a pass."""
    return LocalReranker(tiny_vl_path, device="cpu", max_batch_tokens=20_000)


def _documents(media: dict[str, str]) -> list[Any]:
    words = "sales rose in the third quarter while costs fell "
    return [
        {"image": media["small"]},
        {"text": "a caption", "image": media["tiny"]},
        {"video": [media["frame0"], media["frame1"]]},
        *(words * k for k in range(1, 7)),
    ]


def test_out_of_memory_halves_the_batch_and_keeps_the_scores(
    vl_reranker: LocalReranker, media: dict[str, str]
) -> None:
    documents = _documents(media)
    with recorded_batches(vl_reranker) as plain:
        expected = vl_reranker.score(QUERY, documents)
    assert len(plain) == 1, "the budget must put every pair in one pass"
    limit = plain[0][0] * plain[0][1] // 3
    with recorded_batches(vl_reranker, oom_above=limit) as shapes:
        scores = vl_reranker.score(QUERY, documents)
    assert scores == pytest.approx(expected, abs=1e-5)
    failed = [k for k, (rows, width) in enumerate(shapes) if rows * width > limit]
    assert failed and failed[0] == 0
    for k in failed:
        assert shapes[k][0] > 1
        assert shapes[k + 1][0] == shapes[k][0] // 2  # retried at once, first half
    assert sum(rows for rows, width in shapes if rows * width <= limit) == len(documents)


def test_out_of_memory_on_one_pair_names_its_length(
    vl_reranker: LocalReranker, media: dict[str, str]
) -> None:
    with recorded_batches(vl_reranker) as shapes:
        vl_reranker.score(QUERY, [{"image": media["big"]}])
    ((_, length),) = shapes
    with recorded_batches(vl_reranker, oom_above=length - 1), pytest.raises(OutOfMemoryError) as info:
        vl_reranker.score(QUERY, ["short", {"image": media["big"]}, "also short"])
    assert f"{length} prompt tokens" in str(info.value) and "max_length" in str(info.value)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    with recorded_batches(vl_reranker, oom_above=length - 1):  # usable afterwards
        assert len(vl_reranker.score(QUERY, ["short", "also short"])) == 2


def test_other_errors_are_not_retried(vl_reranker: LocalReranker, media: dict[str, str]) -> None:
    calls: list[int] = []

    def hook(_module: torch.nn.Module, _args: tuple[Any, ...]) -> None:
        calls.append(1)
        raise RuntimeError("some other failure")

    handle = vl_reranker.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        with one_pass_at_a_time(), pytest.raises(RuntimeError, match="some other failure"):
            vl_reranker.score(QUERY, _documents(media))
    finally:
        handle.remove()
    assert calls == [1]
