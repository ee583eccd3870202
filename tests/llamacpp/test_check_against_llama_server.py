"""`qwen-rerank check` against real llama-servers, each finding planted for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank.cli import main
from qwen_rerank.testing.llama_server import LlamaServer

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.external,
    pytest.mark.xdist_group("llama-server"),
]


def check(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """The exit status, and the findings by name plus the report's own keys under ``"report"``."""
    status = main(["check", "--base-url", url, "--max-length", "512", "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    return status, {c["name"]: c for c in report["checks"]} | {"report": report}


def test_a_healthy_llama_server_spoken_to_as_llamacpp_passes(
    llama_server: LlamaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = check(capsys, llama_server.url, "--api", "llamacpp")
    assert status == 0 and report["report"]["ok"]
    for name in ("reachable", "server", "constant scores", "rank head", "instruction", "context length"):
        assert report[name]["status"] == "ok", report[name]
    assert report["server"]["data"]["llama_server"] is True
    assert report["report"]["template"] == "server" and report["template"]["status"] == "ok"


def test_the_wrong_dialect_and_the_double_template_are_found(
    llama_server: LlamaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = check(capsys, llama_server.url)  # --api vllm --template client
    assert status == 0  # warnings, not failures
    assert report["server"]["status"] == "warn" and "--api llamacpp" in report["server"]["fix"]
    assert report["template"]["status"] == "warn" and "twice" in report["template"]["message"]


def test_an_ignored_instruction_is_found(
    llama_server: LlamaServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # vLLM's dialect with the server's template sends the instruction field, which llama-server drops.
    _, report = check(capsys, llama_server.url, "--template", "server")
    finding = report["instruction"]
    assert finding["status"] == "warn" and "ignores the instruction" in finding["message"]
    assert finding["data"]["default"] == finding["data"]["other"]
    assert "llamacpp" in finding["fix"] and "LocalReranker" in finding["fix"]


def test_a_gguf_converted_without_the_reranker_name_fails(
    tiny_model_path: Path, convert: Any, start_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(convert(tiny_model_path, "f32", as_reranker=False))
    status, report = check(capsys, server.url, "--api", "llamacpp")
    assert status == 1 and not report["report"]["ok"]
    head = report["rank head"]
    assert (
        head["status"] == "FAIL" and "qwen3-reranker" in head["fix"] and "convert_hf_to_gguf" in head["fix"]
    )


def test_a_short_context_fails_with_llama_server_flags(
    tiny_gguf: Path, start_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(tiny_gguf, ctx=256)
    status, report = check(capsys, server.url, "--api", "llamacpp")
    context = report["context length"]
    assert status == 1 and context["status"] == "FAIL" and "-c 512" in context["fix"]
    assert 100 <= context["data"]["words"] < 256
