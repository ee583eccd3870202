"""The qwen-rerank command line: as a real subprocess for the key paths, in-process for the rest."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qwen_rerank.cli import build_parser, main
from tests.helpers import TINY_BEIR, TINY_RUN, first_stage_top_k, hand_metrics, parse_trec, read_qrels

SCRIPT = Path(sys.executable).with_name("qwen-rerank")
QUERY = "What is the capital of China?"
DOCUMENTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "Paris is the capital of France.",
]


def run_script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: run `pip install -e .` to register the console script"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )


def assert_one_line_error(stderr: str, fragment: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert lines[-1].startswith("qwen-rerank: error: "), stderr
    assert fragment in lines[-1], stderr


# --- real subprocesses -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_json_output_files_and_metrics_by_hand(
    tiny_model_path: Path, tiny_reranker, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results"
    proc = run_script(
        "eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--top-k", "12", "--model", str(tiny_model_path),
        "--output", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # stdout is exactly one JSON object; progress and notes went to stderr
    report = json.loads(proc.stdout)
    assert proc.stdout.strip().count("\n") == 0
    assert set(report) == {"first_stage", "reranked", "queries"}
    assert report["queries"] == 6
    assert "Reranking" in proc.stderr and "72/72" in proc.stderr  # tqdm bar over 6 queries x 12 candidates
    assert "run queries with no qrels in split 'test', not reranked: 1 (e.g. 'q7')." in proc.stderr

    qrels = read_qrels(TINY_BEIR / "qrels" / "test.tsv")
    dataset_queries = {
        json.loads(line)["_id"]: json.loads(line)["text"] for line in (TINY_BEIR / "queries.jsonl").open()
    }
    corpus = {}
    for line in (TINY_BEIR / "corpus.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        corpus[record["_id"]] = (record["title"] + " " + record["text"]).strip()
    candidates = {q: ids for q, ids in first_stage_top_k(12).items() if q in qrels}
    assert report["first_stage"] == pytest.approx(hand_metrics(qrels, candidates), abs=1e-12)

    # reranked.trec holds the tiny model's ranking of each query's candidates, with its scores
    reranked = parse_trec(out / "reranked.trec")
    assert list(reranked) == list(candidates)
    for query_id, ids in candidates.items():
        expected = tiny_reranker.rerank(dataset_queries[query_id], [corpus[d] for d in ids])
        assert [d for d, _ in reranked[query_id]] == [ids[r.index] for r in expected]
        assert [s for _, s in reranked[query_id]] == pytest.approx([r.score for r in expected], abs=1e-5)
    ranking = {q: [d for d, _ in docs] for q, docs in reranked.items()}
    assert report["reranked"] == pytest.approx(hand_metrics(qrels, ranking), abs=1e-12)
    assert json.loads((out / "metrics.json").read_text()) == report


@pytest.mark.slow
def test_bad_data_is_one_line_on_stderr_from_the_script(tmp_path: Path) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 c1 1 3.0 bm25\nq1 Q0 missing-doc 2 2.0 bm25\n", encoding="utf-8")
    proc = run_script("eval", str(TINY_BEIR), "--run", str(run), "--model", "/nonexistent")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, f"{run}:2: unknown document id 'missing-doc' (not in corpus.jsonl).")


# --- in-process ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rank_reads_stdin_and_prints_the_ranked_table(  # type: ignore[no-untyped-def]
    tiny_model_path: Path, tiny_reranker, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    data = DOCUMENTS[0] + "\r\n\r\n" + "\n".join(DOCUMENTS[1:]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8"))
    status = main(["rank", "--model", str(tiny_model_path), "--device", "cpu", "--query", QUERY])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "qwen-rerank: skipped 1 blank line in <stdin>" in captured.err
    header, *rows = captured.out.splitlines()
    assert header.split() == ["rank", "index", "score", "document"]
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS)
    assert [row.split(maxsplit=3) for row in rows] == [
        [str(rank), str(r.index), f"{r.score:.4f}", r.document] for rank, r in enumerate(expected, start=1)
    ]


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    return path


def test_rank_json_from_jsonl_with_instruction_threshold_and_top_n(  # type: ignore[no-untyped-def]
    tiny_model_path: Path, tiny_reranker, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(DOCUMENTS)), encoding="utf-8"
    )
    instruction = "Given a question, retrieve passages that name a city"
    threshold = sorted(tiny_reranker.score(QUERY, DOCUMENTS, instruction=instruction))[
        1
    ]  # drops one document
    argv = ["rank", "--model", str(tiny_model_path), "--query", QUERY, str(path), "--json"]
    argv += ["--instruction", instruction, "--score-threshold", repr(threshold), "--top-n", "2"]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    expected = tiny_reranker.rerank(
        QUERY, DOCUMENTS, instruction=instruction, score_threshold=threshold, top_n=2
    )
    assert len(expected) == 2
    assert json.loads(captured.out) == {
        "query": QUERY,
        "results": [
            {
                "rank": rank,
                "index": r.index,
                "score": pytest.approx(r.score, abs=1e-6),
                "document": r.document,
                "truncated": False,
                "span": None,
            }
            for rank, r in enumerate(expected, start=1)
        ],
    }


def test_eval_table_output(tiny_model_path: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    status = main(
        ["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--model", str(tiny_model_path), "--top-k", "5"]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["metric", "first", "stage", "reranked", "change"]
    assert [line.split()[0] for line in lines[1:6]] == [
        "ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100",
    ]  # fmt: skip
    qrels = read_qrels(TINY_BEIR / "qrels" / "test.tsv")
    first = hand_metrics(qrels, {q: ids for q, ids in first_stage_top_k(5).items() if q in qrels})
    assert [float(line.split()[1]) for line in lines[1:6]] == pytest.approx(list(first.values()), abs=5e-5)
    assert lines[6] == "6 queries, top 5 first-stage candidates each"


@pytest.mark.parametrize(
    ("argv", "status", "fragment"),
    [
        (["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--top-k", "0"], 2, "--top-k must be a positive"),
        (["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--split", "train"], 1, "no qrels for split"),
        (["eval", "/no/such/data", "--run", str(TINY_RUN)], 1, "/no/such/data: no such dataset folder."),
        (["rank", "--query", "q", "/no/such/docs.txt"], 1, "/no/such/docs.txt: no such file."),
        (["rank", "--query", "q", "--top-n", "0", "/dev/null"], 2, "--top-n must be a positive int or unset"),
        (["rank", "--base-url", "http://127.0.0.1:9", "--device", "cpu", "--query", "q", "/dev/null"], 2,
         "--device only apply to a local model; with --base-url"),
        (["demo", "--base-url", "http://127.0.0.1:9", "--dtype", "bf16"], 2, "--dtype only apply to a local"),
        (["rank", "--base-url", "http://127.0.0.1:9", "--compile", "--query", "q", "/dev/null"], 2,
         "--compile only apply to a local model"),
        (["demo", "--port", "0"], 2, "--port must be between 1 and 65535"),
    ],
)  # fmt: skip
def test_usage_and_data_errors(argv: list[str], status: int, fragment: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, fragment)


def test_empty_and_malformed_documents(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    assert main(["rank", "--query", "q", str(blank)]) == 1
    captured = capsys.readouterr()
    assert "skipped 2 blank lines" in captured.err
    assert_one_line_error(captured.err, f"{blank}: no documents to rank")

    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n', encoding="utf-8")
    assert main(["rank", "--query", "q", str(bad)]) == 1
    assert_one_line_error(
        capsys.readouterr().err, f"{bad}:2: expected a JSON object with a string 'text' field."
    )

    as_lines = tmp_path / "docs.txt"
    as_lines.write_text('{"title": "no text"}\n', encoding="utf-8")
    assert main(["rank", "--query", "q", str(as_lines), "--format", "jsonl"]) == 1
    assert_one_line_error(capsys.readouterr().err, f"{as_lines}:1: expected a JSON object")


def test_model_that_cannot_load_is_one_line(tmp_path: Path, docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    empty_model = tmp_path / "not-a-model"
    empty_model.mkdir()
    assert main(["rank", "--model", str(empty_model), "--query", "q", str(docs_file)]) == 1
    assert_one_line_error(
        capsys.readouterr().err, f"'{empty_model}' is not a model checkpoint: it has no config.json"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model", "http://127.0.0.1:8000"], "is a URL, not a model"),
        (["--model", "/no/such/folder"], "No such folder: '/no/such/folder'"),
        (["--device", "cuda"], "this PyTorch sees no CUDA GPU"),
        (["--device", "mps"], "MPS is not available"),
    ],
)
def test_model_and_device_mistakes_are_one_line_with_the_fix(
    argv: list[str], fragment: str, docs_file: Path, capsys, tiny_model_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if "--model" not in argv:
        argv = [*argv, "--model", str(tiny_model_path)]
    assert main(["rank", *argv, "--query", "q", str(docs_file)]) == 1
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, fragment)
    if "URL" in fragment:
        assert "--base-url" in captured.err


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    from qwen_rerank import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"qwen-rerank {__version__}"


def test_eval_usage_shows_run_as_required(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["eval", str(TINY_BEIR)])
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert " --run RUN_FILE " in err and "[--run RUN_FILE]" not in err
    assert "the following arguments are required: --run" in err


def test_eval_prints_the_real_candidate_depth(tiny_model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--model", str(tiny_model_path), "--top-k", "50"]
    assert main(argv) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "6 queries, at most 14 first-stage candidates each (the run has fewer than 50)"


def test_rank_splits_lines_like_wc_l(tmp_path: Path, tiny_reranker, tiny_model_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    text = "page one\fpage two\r\nsecond\u2028still second\x85also\n\nthird\n"
    path = tmp_path / "docs.txt"
    path.write_bytes(text.encode("utf-8"))
    assert subprocess.run(["wc", "-l"], input=text.encode(), capture_output=True).stdout.split()[0] == b"4"
    argv = ["rank", "--model", str(tiny_model_path), "--query", QUERY, str(path), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    documents = ["page one\fpage two", "second\u2028still second\x85also", "third"]
    results = json.loads(captured.out)["results"]
    assert [(r["index"], r["document"]) for r in results] == [
        (r.index, r.document) for r in tiny_reranker.rerank(QUERY, documents)
    ]
    assert "skipped 1 blank line in" in captured.err

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"text": "one\u2028line"}\n{"text": "two"}\n', encoding="utf-8")
    assert main(["rank", "--model", str(tiny_model_path), "--query", QUERY, str(jsonl), "--json"]) == 0
    assert sorted(r["document"] for r in json.loads(capsys.readouterr().out)["results"]) == [
        "one\u2028line",
        "two",
    ]


def test_demo_on_a_busy_port_is_one_line_naming_port(capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("gradio")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--model", "/not/loaded", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, f"cannot listen on 127.0.0.1:{port}")
    assert "--port" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_allow_backend_offers_a_dropdown(tiny_model_path: Path, fake_vllm) -> None:  # type: ignore[no-untyped-def]
    gradio = pytest.importorskip("gradio")
    from tests.helpers import connect, free_port

    port = free_port()
    argv = ["demo", "--model", str(tiny_model_path), "--port", str(port), "--allow-backend", fake_vllm.url]
    server = threading.Thread(target=lambda: main(argv), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not any(app.is_running and app.server_port == port for app in gradio.Blocks.get_instances()):
            assert server.is_alive() and time.monotonic() < deadline, "qwen-rerank demo did not start"
            time.sleep(0.2)
        client = connect(f"http://127.0.0.1:{port}/")
        _, _, timing = client.predict(
            QUERY, "\n".join(DOCUMENTS), None, None, fake_vllm.url, api_name="/rerank"
        )
        assert timing.endswith(f"with {fake_vllm.url}.")
        assert len(fake_vllm.rerank_requests) == 1
    finally:
        for app in gradio.Blocks.get_instances():
            if app.server_port == port:
                app.close()
        server.join(timeout=30)


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("pytrec_eval", ["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--model", "/unused"], "eval"),
        ("gradio", ["demo", "--model", "/unused"], "demo"),
    ],
)
def test_missing_optional_dependency_names_the_extra(
    module: str,
    argv: list[str],
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    assert main(argv) == 1
    assert_one_line_error(capsys.readouterr().err, f'pip install "qwen-rerank[{extra}]"')


def test_help_lists_the_three_commands(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("rank", "eval", "demo"):
        assert command in out


@pytest.mark.slow
def test_demo_command_serves_the_model_it_was_given(tiny_model_path: Path, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("gradio")
    from tests.helpers import connect, demo_served_by_cli, expected_rows

    with demo_served_by_cli(["demo", "--model", str(tiny_model_path), "--device", "cpu"]) as (url, statuses):
        table, _, timing = connect(url).predict(QUERY, "\n".join(DOCUMENTS), api_name="/rerank")
        assert [row[:3] for row in table["data"]] == expected_rows(tiny_reranker.rerank(QUERY, DOCUMENTS))
        assert timing.endswith(f"with {tiny_model_path}.")
    assert statuses == [0]


# --- the vLLM backend, through the fake server -----------------------------------------------------------


def test_rank_against_vllm_matches_local(fake_vllm, tiny_reranker, docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["rank", "--base-url", fake_vllm.url, "--query", QUERY, str(docs_file), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS)
    assert [(r["index"], r["document"]) for r in results] == [(r.index, r.document) for r in expected]
    assert [r["score"] for r in results] == pytest.approx([r.score for r in expected], abs=1e-4)
    body = fake_vllm.rerank_requests[0].body
    assert "model" not in body and body["documents"][1].startswith(
        "<Document>: The capital of China is Beijing."
    )


def test_rank_against_vllm_with_server_template(fake_vllm, tiny_reranker, docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    instruction = "Given a question, retrieve passages that name a city"
    argv = [
        "rank",
        "--base-url",
        fake_vllm.url,
        "--template",
        "server",
        "--model",
        fake_vllm.served_model_name,
    ]
    assert main([*argv, "--query", QUERY, "--instruction", instruction, str(docs_file), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS, instruction=instruction)
    assert [r["index"] for r in results] == [r.index for r in expected]
    body = fake_vllm.rerank_requests[0].body
    assert (
        body["documents"] == DOCUMENTS
        and body["instruction"] == instruction
        and body["model"] == fake_vllm.served_model_name
    )


def test_eval_against_vllm_equals_eval_with_the_local_model(fake_vllm, tiny_reranker, capsys) -> None:  # type: ignore[no-untyped-def]
    from qwen_rerank.tools.evaluation import evaluate

    argv = [
        "eval",
        str(TINY_BEIR),
        "--run",
        str(TINY_RUN),
        "--top-k",
        "5",
        "--base-url",
        fake_vllm.url,
        "--json",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    local = evaluate(tiny_reranker, TINY_BEIR, TINY_RUN, top_k=5).as_dict()
    assert report == {
        **local,
        "first_stage": pytest.approx(local["first_stage"]),
        "reranked": pytest.approx(local["reranked"]),
    }
    assert sum(len(r.body["documents"]) for r in fake_vllm.rerank_requests) == 6 * 5


def test_server_error_is_one_line(fake_vllm, docs_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=400, message="documents too strange")
    assert main(["rank", "--base-url", fake_vllm.url, "--query", QUERY, str(docs_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, "documents too strange")


def test_vllm_only_options_need_a_base_url(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["rank", "--template", "server", "--tokenizer", "x", "--query", "q", "/dev/null"]) == 2
    assert_one_line_error(
        capsys.readouterr().err, "--template and --tokenizer only apply to a vLLM server: add --base-url"
    )


def test_messages_say_one_attempt_and_one_query_in_the_singular(closed_port_url: str) -> None:
    from qwen_rerank import RemoteConnectionError, VLLMReranker
    from qwen_rerank.tools.evaluation import EvalReport, format_table

    with (
        VLLMReranker(closed_port_url, max_retries=0) as reranker,
        pytest.raises(RemoteConnectionError) as info,
    ):
        reranker.rerank(QUERY, DOCUMENTS)
    assert "after 1 attempt:" in str(info.value)
    metrics = dict.fromkeys(("ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100"), 0.5)
    one = EvalReport(metrics, metrics, queries=1, reranked_run={"q": [("d", 0.5)]}, top_k=1)
    assert format_table(one).splitlines()[-1] == "1 query, top 1 first-stage candidate each"


def test_compile_reaches_the_local_backend_only_when_asked() -> None:
    from qwen_rerank.cli._common import backend_options

    parser = build_parser()
    assert "compile" not in backend_options(parser.parse_args(["rank", "--query", "q"]))[0]
    assert backend_options(parser.parse_args(["rank", "--query", "q", "--compile"]))[0]["compile"] is True
