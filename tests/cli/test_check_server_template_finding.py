"""`qwen-rerank check`'s "server template" finding against the fake server, which renders as vLLM does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_rerank.cli import main
from qwen_rerank.prompt import server_template_path

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def finding(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", "--base-url", url, "--max-length", "1024", "--json", *extra])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    return status, checks["server template"]


def test_vllms_shipped_template_fails_with_ours_as_the_fix(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = "vllm"  # as vLLM renders qwen3_reranker.jinja: no final newline
    status, found = finding(capsys, fake_vllm.url, "--template", "server")
    assert status == 1 and found["status"] == "FAIL"
    assert "final newline" in found["message"] and not found["data"]["exact"]
    assert f"--chat-template {server_template_path()}" in found["fix"]


def test_with_the_client_template_the_wrong_server_template_is_a_warning(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = "vllm"
    _, found = finding(capsys, fake_vllm.url, "--template", "client")
    assert found["status"] == "warn" and str(server_template_path()) in found["fix"]


def test_a_template_that_renders_the_card_prompt_passes(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    status, found = finding(capsys, fake_vllm.url, "--template", "server")
    assert status == 0 and found["status"] == "ok" and found["data"]["exact"] is True


def test_a_server_without_a_template_has_nothing_to_compare(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    _, found = finding(capsys, fake_vllm.url)
    assert found["status"] == "ok" and found["data"] == {"wraps": False}


def test_other_dialects_are_not_read(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.api = "sglang"
    _, found = finding(capsys, fake_vllm.url, "--api", "sglang")
    assert found["status"] == "ok" and "not checked" in found["message"]
