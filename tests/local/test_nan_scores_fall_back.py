"""A local model that computes NaN (a broken weight, a float16 overflow) fails as a server's invalid
score does: a backend failure that ``on_error="passthrough"`` falls back from, with a clear class."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from qwen_rerank import (
    InvalidScoreError,
    LocalReranker,
    QwenRerankError,
    fallback_counts,
    reset_fallback_counts,
)

QUERY = "What is the capital of China?"
DOCS = ["Beijing is the capital of China.", "Paris is in France.", "Bananas are yellow."]


@pytest.fixture(scope="module")
def nan_reranker(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalReranker:
    """The tiny model with one NaN in its final norm: every hidden state, so every score, is NaN."""
    out = tmp_path_factory.mktemp("nan-weight")
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(out)
    for path in tiny_model_path.iterdir():
        if path.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            shutil.copy(path, out / path.name)
    return LocalReranker(out, device="cpu")


async def rerank(reranker: LocalReranker, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return reranker.rerank(QUERY, DOCS, **kwargs)
    return await reranker.arerank(QUERY, DOCS, **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_nan_scores_raise_a_backend_failure(nan_reranker: LocalReranker, mode: str) -> None:
    with pytest.raises(InvalidScoreError, match="not a probability") as info:
        await rerank(nan_reranker, mode)
    assert isinstance(info.value, QwenRerankError)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_nan_scores_fall_back_under_passthrough(nan_reranker: LocalReranker, mode: str) -> None:
    reset_fallback_counts()
    results = await rerank(nan_reranker, mode, top_n=2, on_error="passthrough")
    assert [(r.index, r.reranked, r.error) for r in results] == [
        (0, False, "InvalidScoreError"),
        (1, False, "InvalidScoreError"),
    ]
    assert fallback_counts() == {"InvalidScoreError": 1}
    reset_fallback_counts()


def test_many_queries_name_the_request_and_keep_the_class(nan_reranker: LocalReranker) -> None:
    with pytest.raises(InvalidScoreError, match=r"requests\[0\]"):
        nan_reranker.score_many([(QUERY, DOCS), ("another", DOCS[:1])])
