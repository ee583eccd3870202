"""LocalReranker on out of memory: the batch is halved and the scores kept; one document too long
is named; other errors are not retried. The fault is torch's own OutOfMemoryError, raised by a
forward pre-hook on the model's input embeddings, as a real device would raise it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from qwen_rerank import OutOfMemoryError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
    one_pass_at_a_time,
    recorded_batches,
)


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_out_of_memory_halves_the_batch_and_keeps_the_scores(
    make: Any, shuffled: list[str], prefix_reuse: bool
) -> None:
    reranker = make(max_batch_tokens=4000, prefix_reuse=prefix_reuse)
    expected = reranker.score(QUERY, shuffled)
    with recorded_batches(reranker, oom_above=700) as shapes:
        scores = reranker.score(QUERY, shuffled)
    assert max_diff(scores, expected) < 1e-6
    failed = [k for k, (rows, width) in enumerate(shapes) if rows * width > 700]
    assert failed, "the budget must be large enough for the injected limit to bite"
    for k in failed:
        assert shapes[k][0] > 1
        assert shapes[k + 1][0] == shapes[k][0] // 2  # retried at once, first half
    scored = [rows for rows, width in shapes if rows * width <= 700]
    if prefix_reuse:
        assert shapes[0][0] == 1
        scored = scored[1:]
    assert sum(scored) == len(set(shuffled))


def test_out_of_memory_on_a_single_document_names_its_length(make: Any) -> None:
    reranker = make()
    long_doc = "many words " * 200
    length = len(reranker.prompt_tokenizer.encode_pairs(QUERY, [long_doc], DEFAULT_INSTRUCTION, 8192)[0])
    with recorded_batches(reranker, oom_above=300), pytest.raises(OutOfMemoryError) as info:
        reranker.score(QUERY, ["short", long_doc, "also short"])
    assert f"{length} prompt tokens" in str(info.value)
    assert "max_length" in str(info.value)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    # Short documents still fit; the reranker is usable afterwards.
    with recorded_batches(reranker, oom_above=300):
        assert len(reranker.score(QUERY, ["short", "also short"])) == 2


def test_other_errors_are_not_retried(make: Any) -> None:
    reranker = make()
    calls: list[int] = []

    def hook(_module: torch.nn.Module, _args: tuple[Any, ...]) -> None:
        calls.append(1)
        raise RuntimeError("some other failure")

    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        with pytest.raises(RuntimeError, match="some other failure"):
            reranker.score(QUERY, DOCUMENTS)
        assert 1 <= len(calls) <= torch.get_num_threads()  # at most one failed pass per worker
        calls.clear()
        with one_pass_at_a_time(), pytest.raises(RuntimeError, match="some other failure"):
            reranker.score(QUERY, DOCUMENTS)
    finally:
        handle.remove()
    assert calls == [1]
