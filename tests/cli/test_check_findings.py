"""``qwen-rerank check`` against the fake server, healthy and with each planted fault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def check(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", "--base-url", url, "--max-length", "1024", "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    return status, {c["name"]: c for c in report["checks"]} | {"ok": report["ok"]}


@pytest.mark.parametrize("api", ["vllm", "sglang", "cohere"])
def test_a_healthy_server_passes_every_check(fake_vllm, capsys, api: str) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.api = api
    status, report = check(capsys, fake_vllm.url, "--api", api, "--model", fake_vllm.served_model_name)
    assert status == 0 and report["ok"]
    for name in ("reachable", "constant scores", "template", "context length"):
        assert report[name]["status"] == "ok", report[name]
    assert report["template"]["data"]["expected"] == "client"
    assert report["reachable"]["data"]["ms_20"] > 0


def test_constant_scores_fail(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("constant", value=0.5, times=1000)
    status, report = check(capsys, fake_vllm.url)
    assert status == 1 and not report["ok"]
    assert report["constant scores"]["status"] == "FAIL" and "0.5" in report["constant scores"]["message"]


@pytest.mark.parametrize(("template", "status"), [("client", "warn"), ("server", "ok")])
def test_a_server_template_is_detected(fake_vllm, capsys, template: str, status: str) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True  # vLLM started with --chat-template qwen3_reranker.jinja
    code, report = check(capsys, fake_vllm.url, "--template", template)
    assert report["template"]["status"] == status and report["template"]["data"]["expected"] == "server"
    if status == "warn":
        assert (
            "twice" in report["template"]["message"] and report["template"]["fix"] == "Use template='server'."
        )
    assert code == 0  # a warning is not a failure


def test_client_expecting_a_server_template_is_warned(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    _, report = check(capsys, fake_vllm.url, "--template", "server")
    assert report["template"]["status"] == "warn" and "not wrapped at all" in report["template"]["message"]


def test_a_short_context_fails_with_the_longest_accepted(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.max_model_len = 400
    status, report = check(capsys, fake_vllm.url)
    context = report["context length"]
    assert status == 1 and context["status"] == "FAIL" and "--max-model-len 1024" in context["fix"]
    assert 250 <= context["data"]["words"] < 400


def test_an_unreachable_server_fails_and_says_so(closed_port_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    status = main(["check", "--base-url", closed_port_url])
    out = capsys.readouterr().out
    assert status == 1 and out.startswith("FAIL  reachable") and "fix:" in out
