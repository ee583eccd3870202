"""The findings `check` gained for real servers, on the fake vLLM server (no llama-server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def check(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", "--base-url", url, "--max-length", "512", "--json", *extra])
    return status, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_a_healthy_vllm_is_not_llama_server_and_honours_the_instruction(  # type: ignore[no-untyped-def]
    fake_vllm, capsys
) -> None:
    status, report = check(capsys, fake_vllm.url)
    assert status == 0
    assert report["server"]["status"] == "ok" and report["server"]["data"]["llama_server"] is False
    assert report["rank head"]["status"] == "ok"
    instruction = report["instruction"]
    assert instruction["status"] == "ok" and instruction["data"]["default"] != instruction["data"]["other"]


def test_scores_near_zero_for_every_pair_mean_no_rank_head(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("constant", value=0.0, times=1000)
    status, report = check(capsys, fake_vllm.url)
    assert status == 1
    head = report["rank head"]
    assert head["status"] == "FAIL" and "near 0" in head["message"] and "qwen3-reranker" in head["fix"]
