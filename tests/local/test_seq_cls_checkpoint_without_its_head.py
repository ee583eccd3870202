"""A -seq-cls checkpoint whose classifier row (``score.weight``) is missing is refused: loading it
would give a random head, and scores that change on every load."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from qwen_rerank import LocalReranker, ModelLoadError
from qwen_rerank.testing.seq_cls import convert_to_seq_cls


@pytest.fixture(scope="module")
def headless_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = convert_to_seq_cls(tiny_model_path, tmp_path_factory.mktemp("headless") / "tiny-seq-cls")
    (weights,) = path.glob("*.safetensors")
    tensors = load_file(weights)
    assert "score.weight" in tensors
    del tensors["score.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    return path


def test_a_seq_cls_checkpoint_without_score_weight_is_a_load_error(headless_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"score\.weight") as info:
        LocalReranker(headless_path, device="cpu")
    assert str(headless_path) in str(info.value)
