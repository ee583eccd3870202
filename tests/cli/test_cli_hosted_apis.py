"""`--api dashscope|siliconflow|deepinfra`: rank and check a hosted API, its key from its own variable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.cli import main
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-cli-hosted-0123"
QUERY = "What is the capital of China?"
DOCUMENTS = ["Gravity attracts bodies.", "The capital of China is Beijing.", "Paris is in France."]


@pytest.fixture(scope="module")
def dashscope(tiny_model_path: Path) -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", tiny_model_path, api_key=KEY) as server:
        yield server


@pytest.fixture
def docs_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "own-server-key")  # never sent to a hosted API
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    return path


def test_rank_with_a_hosted_api_ranks_as_the_model_does(  # type: ignore[no-untyped-def]
    dashscope: FakeHostedServer, docs_file: Path, tiny_model_path: Path, capsys
) -> None:
    dashscope.reset()
    dashscope.add_fault("shuffle")
    argv = ["rank", "--api", "dashscope", "--base-url", dashscope.url, "--query", QUERY, str(docs_file)]
    assert main([*argv, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    local = LocalReranker(str(tiny_model_path), device="cpu", dtype="float32")
    assert [r["index"] for r in results] == [r.index for r in local.rerank(QUERY, DOCUMENTS)]
    assert [r.headers["authorization"] for r in dashscope.requests] == [f"Bearer {KEY}"]


def test_check_against_a_hosted_api_confirms_the_key_the_instruction_and_the_limits(  # type: ignore[no-untyped-def]
    dashscope: FakeHostedServer, docs_file: Path, capsys
) -> None:
    dashscope.reset()
    assert main(["check", "--api", "dashscope", "--base-url", dashscope.url, "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] and report["template"] == "server"
    assert checks["instruction"]["status"] == "ok"
    assert checks["limits"]["data"] == {
        "max_documents": 500,
        "max_tokens": 30000,
        "max_tokens_per_item": 4000,
    }
    assert KEY not in out
    # Every request went to the rerank endpoint: the key reached no other path.
    assert {r.path for r in dashscope.requests} == {"/api/v1/services/rerank/text-rerank/text-rerank"}


def test_a_wrong_key_fails_the_check_naming_the_variable(  # type: ignore[no-untyped-def]
    dashscope: FakeHostedServer, docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong-9876")
    assert main(["check", "--api", "dashscope", "--base-url", dashscope.url]) == 1
    out = capsys.readouterr().out
    assert "FAIL  reachable" in out and "DASHSCOPE_API_KEY" in out and "sk-wrong-9876" not in out


def test_a_missing_key_is_a_usage_error_naming_the_variable(  # type: ignore[no-untyped-def]
    docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("SILICONFLOW_API_KEY", raising=False)
    code = main(["rank", "--api", "siliconflow", "--query", QUERY, str(docs_file)])
    assert code != 0
    assert "SILICONFLOW_API_KEY" in capsys.readouterr().err
