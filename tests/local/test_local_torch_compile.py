"""LocalReranker(compile=True): scores equal eager ones, compiled kernels kept in the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
)

pytestmark = pytest.mark.slow


def test_compiled_scores_match_eager(
    tiny_model_path: Path, tiny_reranker: LocalReranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen_rerank.local._scorer import compile_cache_dir

    assert tiny_reranker._scorer.forward is tiny_reranker.model  # off by default
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    # A small budget gives every kind of pass: a prefix, rows continuing it, padded whole prompts,
    # and a long prompt alone with no mask.
    compiled = LocalReranker(str(tiny_model_path), device="cpu", compile=True, max_batch_tokens=160)
    eager = LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=160)
    assert compiled._scorer.forward is not compiled.model
    requests = [(QUERY, DOCUMENTS), ("Where is Paris?", DOCUMENTS[:3]), ("long " * 120, DOCUMENTS[:1])]
    got = compiled.score_many(requests)
    want = eager.score_many(requests)
    for g, w in zip(got, want, strict=True):
        assert max_diff(g, w) < 1e-5
    # Compiled kernels are kept on disk, in the per-user cache folder unless told otherwise.
    cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert cache == compile_cache_dir()
    assert any(cache.iterdir())
