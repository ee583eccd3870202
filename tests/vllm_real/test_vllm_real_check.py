"""`qwen-rerank check` against real vLLM servers, each misconfiguration planted for real."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.helpers import check

pytestmark = [
    pytest.mark.external,
    pytest.mark.xdist_group("vllm"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
]


def test_a_healthy_server_with_the_client_template_passes(
    vllm_plain: VLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = check(capsys, vllm_plain.url)
    assert status == 0 and report["report"]["ok"], report
    for name in ("reachable", "constant scores", "usage", "template", "instruction", "context length"):
        assert report[name]["status"] == "ok", report[name]
    assert report["server template"]["data"] == {"wraps": False}


def test_a_max_model_len_shorter_than_max_length_fails_naming_the_flag(
    vllm_plain: VLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = check(capsys, vllm_plain.url, "--max-length", "2048")
    context = report["context length"]
    assert status == 1 and context["status"] == "FAIL", context
    assert "--max-model-len 2048" in context["fix"]
    assert 300 <= context["data"]["words"] < 512


def test_a_server_without_hf_overrides_fails_naming_them(
    start_vllm: Callable[..., VLLMServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # Without them vLLM serves Qwen3ForCausalLM as an embedding model, and /v1/rerank answers
    # the cosine similarity of query and document embeddings: scores from -1 to 1.
    server = start_vllm(overrides=False)
    status, report = check(capsys, server.url)
    reachable = report["reachable"]
    assert status == 1 and reachable["status"] == "FAIL", reachable
    assert "outside [0, 1]" in reachable["message"]
    assert "not with probabilities" in reachable["fix"] and "--hf_overrides" in reachable["fix"]
