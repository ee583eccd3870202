"""`check` against real llama-servers: recognised first, then judged as llama-server, whatever `--api`.

A GGUF converted without the reranker's name has no rerank template and no rank head; its
scores spread anyway, so only the server's own count of a raw pair's tokens shows it. With
``-np`` slots, ``/props`` reports the context of one slot (``default_generation_settings.n_ctx``)
and their number (``total_slots``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def check(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", "--base-url", url, "--json", *extra])
    return status, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_a_gguf_without_its_rank_head_fails_under_the_default_api_too(
    tiny_model_path: Path, convert: Any, start_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(convert(tiny_model_path, "f32", as_reranker=False), threads=1)
    status, report = check(capsys, server.url, "--max-length", "512")  # --api vllm --template client
    assert status == 1
    assert report["server"]["status"] == "warn" and report["server"]["data"]["llama_server"] is True
    head = report["rank head"]
    assert head["status"] == "FAIL" and "convert_hf_to_gguf" in head["fix"], head
    template = report["template"]
    assert template["status"] == "warn" and "fits" not in template["message"], template


def test_the_context_fix_counts_llama_servers_slots(
    tiny_gguf: Path, start_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(tiny_gguf, threads=1, ctx=1024, extra=["-np", "2"])
    status, report = check(capsys, server.url, "--api", "llamacpp", "--max-length", "1000")
    assert report["server"]["data"]["total_slots"] == 2 and report["server"]["data"]["n_ctx"] == 512
    context = report["context length"]
    assert status == 1 and context["status"] == "FAIL"
    # Not "-c 1000", which it has: each of its 2 slots gets half of it.
    assert "-c 2000 or more" in context["fix"] and "-np 1 and -c 1000" in context["fix"], context["fix"]
    assert "2 slots share -c" in context["fix"]
    assert context["data"]["words"] < 512
