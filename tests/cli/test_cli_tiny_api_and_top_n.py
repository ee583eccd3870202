"""`--tiny` runs offline on the cached tiny model, `--api` reaches every command, and top_n has one rule."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank import InvalidInputError
from qwen_rerank.cli import main
from tests.helpers import TINY_BEIR, TINY_RUN

pytestmark = pytest.mark.xdist_group("cli-tiny")

QUERY = "What is the capital of China?"
DOCUMENTS = ["Gravity attracts bodies.", "The capital of China is Beijing.", "Paris is in France."]


@pytest.fixture(scope="module")
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh per-user cache: `--tiny` builds the tiny model there on first use."""
    folder = tmp_path_factory.mktemp("user-cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QWEN_RERANK_CACHE", str(folder))
        yield folder


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    return path


def test_rank_tiny_scores_with_the_cached_tiny_model(
    user_cache: Path, tiny_reranker, docs_file: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert main(["rank", "--tiny", "--query", QUERY, str(docs_file), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS)  # same arguments, same seed: the same weights
    assert [r["index"] for r in results] == [r.index for r in expected]
    assert [r["score"] for r in results] == pytest.approx([r.score for r in expected], abs=1e-6)
    (built,) = [p for p in user_cache.iterdir() if p.name.startswith("tiny-qwen3-reranker-")]
    assert (built / "config.json").is_file()


def test_eval_tiny_equals_eval_with_the_model_path(user_cache: Path, tiny_model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--top-k", "3", "--json"]
    assert main([*argv, "--tiny"]) == 0
    tiny = json.loads(capsys.readouterr().out)
    assert main([*argv, "--model", str(tiny_model_path)]) == 0
    assert tiny == json.loads(capsys.readouterr().out)


def test_check_tiny_checks_the_fake_server_and_passes(user_cache: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["check", "--tiny", "--max-length", "512", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["base_url"].startswith("http://127.0.0.1:")
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "reachable": "ok", "server": "ok", "constant scores": "ok", "rank head": "ok", "usage": "ok",
        "template": "ok", "server template": "ok", "instruction": "ok", "context length": "ok",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["rank", "--tiny", "--model", "x", "--query", "q", "/dev/null"], "--tiny chooses the model itself"),
        (["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--tiny", "--base-url", "http://127.0.0.1:9"],
         "drop --base-url, or drop --tiny"),
        (["demo", "--tiny", "--model", "x"], "--tiny chooses the model itself"),
        (["check"], "--base-url URL, or --tiny"),
        (["rank", "--api", "sglang", "--query", "q", "/dev/null"], "--api only apply to a vLLM server"),
        (["rank", "--query", "q", "--top-n", "0", "/dev/null"],
         "--top-n must be a positive int or unset, got 0. Leave it unset to keep all."),
        (["rank", "--query", "q", "--top-n", "-3", "/dev/null"], "--top-n must be a positive int or unset"),
    ],
)  # fmt: skip
def test_usage_errors_name_the_fix(argv: list[str], fragment: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("qwen-rerank: error: ") and fragment in line


def test_check_tiny_and_base_url_exclude_each_other(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["check", "--tiny", "--base-url", "http://127.0.0.1:9"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("api", ["sglang", "cohere"])
def test_rank_and_eval_speak_every_api(api: str, fake_vllm, tiny_reranker, docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.api = api
    backend = ["--base-url", fake_vllm.url, "--api", api, "--model", fake_vllm.served_model_name]
    assert main(["rank", *backend, "--query", QUERY, str(docs_file), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["index"] for r in results] == [r.index for r in tiny_reranker.rerank(QUERY, DOCUMENTS)]
    assert main(["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--top-k", "2", *backend, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"] == 6
    assert fake_vllm.rerank_requests


@pytest.mark.parametrize(
    "command", [["rank", "--query", QUERY, "DOCS"], ["eval", "DATA", "--run", "RUN"], ["check"]]
)
def test_api_cohere_without_a_model_names_the_flag(command: list[str], docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = [{"DOCS": str(docs_file), "DATA": str(TINY_BEIR), "RUN": str(TINY_RUN)}.get(a, a) for a in command]
    assert main([*argv, "--base-url", "http://127.0.0.1:9", "--api", "cohere"]) == 2  # before any request
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line
        == "qwen-rerank: error: --api cohere needs --model NAME, the name the server serves the reranker as."
    )


@pytest.mark.parametrize("top_n", [0, -1])
def test_python_refuses_zero_and_negative_top_n_saying_how_to_keep_all(tiny_reranker, top_n: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="Leave it None to keep all"):
        tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=top_n)
    assert len(tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=None)) == len(DOCUMENTS)


@pytest.mark.slow
def test_demo_tiny_serves_the_page_on_the_cached_tiny_model(user_cache: Path, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("gradio")
    from tests.helpers import connect, demo_served_by_cli, expected_rows

    with demo_served_by_cli(["demo", "--tiny"]) as (url, statuses):
        table, _, timing = connect(url).predict(QUERY, "\n".join(DOCUMENTS), api_name="/rerank")
        assert [row[:3] for row in table["data"]] == expected_rows(tiny_reranker.rerank(QUERY, DOCUMENTS))
        assert f"with {user_cache}{os.sep}tiny-qwen3-reranker-" in timing
    assert statuses == [0]
