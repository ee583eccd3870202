"""LocalReranker in bfloat16 on CPU, and the warning where the CPU has no native half precision."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from qwen_rerank import LocalReranker, QwenRerankWarning
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
)


@pytest.mark.filterwarnings("ignore::qwen_rerank.QwenRerankWarning")  # a CPU without bf16 warns
def test_bfloat16_on_cpu(tiny_model_path: Path, tiny_reranker: LocalReranker) -> None:
    assert tiny_reranker.dtype == torch.float32
    assert next(tiny_reranker.model.parameters()).dtype == torch.float32
    bf16 = LocalReranker(str(tiny_model_path), device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    scores = bf16.score(QUERY, DOCUMENTS)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max_diff(scores, tiny_reranker.score(QUERY, DOCUMENTS)) < 0.05


def test_half_precision_on_a_cpu_without_it_warns(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen_rerank.local import _devices

    monkeypatch.setattr(_devices, "cpu_has_native", lambda dtype: False)
    with pytest.warns(QwenRerankWarning, match=r"dtype='bfloat16'.*slower than in float32") as record:
        LocalReranker(str(tiny_model_path), device="cpu", dtype="bf16")
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", QwenRerankWarning)
        LocalReranker(str(tiny_model_path), device="cpu", dtype="float32")
        monkeypatch.setattr(_devices, "cpu_has_native", lambda dtype: True)
        LocalReranker(str(tiny_model_path), device="cpu", dtype="bfloat16")
