"""LocalReranker's score cache (cache_size): repeats never reach the model, least recently used goes
first, off by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_rerank import InvalidInputError, LocalReranker
from qwen_rerank.local._cache import ScoreCache
from tests.local.fast_path import (
    DOCUMENTS,
    INSTRUCTION,
    QUERY,
    recorded_batches,
)


def test_cache_answers_repeats_without_the_model(tiny_model_path: Path) -> None:
    reranker = LocalReranker(str(tiny_model_path), device="cpu", cache_size=8)
    assert reranker.cache_size == 8
    first = reranker.score(QUERY, DOCUMENTS[:4])
    with recorded_batches(reranker) as shapes:
        assert reranker.score(QUERY, DOCUMENTS[:4]) == first
        assert reranker.score(QUERY, DOCUMENTS[1:3]) == first[1:3]
    assert shapes == []
    # A new document runs alone; the cached ones are not recomputed.
    with recorded_batches(reranker) as shapes:
        scores = reranker.score(QUERY, [DOCUMENTS[0], DOCUMENTS[5]])
    assert scores[0] == first[0]
    # One document does not pay for a prefix pass: its whole prompt is the only row run.
    assert shapes == [(1, shapes[0][1])]
    # The instruction and the query are part of the key.
    with recorded_batches(reranker) as shapes:
        other = reranker.score(QUERY, DOCUMENTS[:1], instruction=INSTRUCTION)
        reranker.score("another query", DOCUMENTS[:1])
    assert len(shapes) == 2
    assert other[0] != first[0]


def test_cache_is_bounded_and_least_recently_used_goes_first(tiny_model_path: Path) -> None:
    reranker = LocalReranker(str(tiny_model_path), device="cpu", cache_size=3)
    reranker.score(QUERY, ["a", "b", "c"])
    reranker.score(QUERY, ["a"])  # a is now the most recent
    reranker.score(QUERY, ["d"])  # evicts b
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["a", "c", "d"])
    assert shapes == []
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["b"])
    assert shapes
    reranker.clear_cache()
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["a"])
    assert shapes


def test_cache_is_off_by_default_and_checks_its_size(
    tiny_reranker: LocalReranker, tiny_model_path: Path
) -> None:
    assert tiny_reranker.cache_size == 0
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(InvalidInputError, match="cache_size"):
            LocalReranker(str(tiny_model_path), cache_size=bad)  # type: ignore[arg-type]


def test_score_cache_alone() -> None:
    cache = ScoreCache(2)
    cache.put_many([("a", 0.1), ("b", 0.2)])
    assert cache.get_many(["a", "x"]) == [0.1, None]
    cache.put_many([("c", 0.3)])  # evicts b, the least recently used
    assert cache.get_many(["b", "a", "c"]) == [None, 0.1, 0.3]
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
