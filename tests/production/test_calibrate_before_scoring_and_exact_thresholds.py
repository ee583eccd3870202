"""`calibrate` refuses what it can before it scores, and every threshold it prints pastes back exactly.

A loopback server scores each document by the marker in its text (a table set by the test), so
the scores, tiny ones included, are the test's own; it counts the rerank calls it answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import VLLMReranker
from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

# Scores below 1e-17, and a pair of neighbours no short decimal separates.
SCORES = {"d1": 0.9, "d2": 3e-18, "d3": 2.5e-20, "d4": 1e-21, "d5": 0.3, "d6": 0.30000000000000004}
RELEVANT = {"q1": ["d1", "d3"], "q2": ["d6"]}
RUN = {"q1": ["d1", "d2", "d3", "d4"], "q2": ["d5", "d6"]}


@dataclass
class Scorer:
    url: str
    calls: list[int] = field(default_factory=list)
    on_call: list[Callable[[], object]] = field(default_factory=list)


def _handler(calls: list[int], on_call: list[Callable[[], object]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(len(body["documents"]))
            for hook in on_call:
                hook()
            results = [
                {"index": i, "relevance_score": SCORES[re.search(r"marker-(d\d)", doc).group(1)]}  # type: ignore[union-attr]
                for i, doc in enumerate(body["documents"])
            ]
            data = json.dumps({"results": results}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def scorer() -> Iterator[Scorer]:
    calls: list[int] = []
    on_call: list[Callable[[], object]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(calls, on_call))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Scorer(f"http://127.0.0.1:{server.server_address[1]}", calls, on_call)
    finally:
        server.shutdown()
        server.server_close()


def write_dataset(folder: Path, relevant: dict[str, list[str]]) -> tuple[Path, Path]:
    """A BEIR folder and a TREC run for `SCORES` and `RUN`, with `relevant` as the qrels."""
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": d, "title": "", "text": f"Document marker-{d}."} for d in SCORES]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus) + "\n")
    queries = [{"_id": q, "text": f"question {q}"} for q in RUN]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    qrels = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, ds in relevant.items() for d in ds]
    if not any(relevant.values()):  # every query judged, none relevant
        qrels += [f"{q}\t{d}\t0" for q, ds in RUN.items() for d in ds]
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    run = folder / "run.trec"
    lines = [f"{q} Q0 {d} {r + 1} {10 - r} bm25" for q, ds in RUN.items() for r, d in enumerate(ds)]
    run.write_text("\n".join(lines) + "\n")
    return folder, run


def calibrate(
    capsys: pytest.CaptureFixture[str], url: str, folder: Path, run: Path, *extra: str
) -> tuple[int, str, str]:
    status = main(["calibrate", str(folder), "--run", str(run), "--base-url", url, *extra])
    out = capsys.readouterr()
    return status, out.out, out.err


def kept_by(url: str, threshold: float) -> int:
    """How many candidates ``score_threshold=threshold`` keeps, over the run's queries."""
    with VLLMReranker(url, max_retries=0) as reranker:
        return sum(
            len(
                reranker.rerank(
                    f"question {q}", [f"Document marker-{d}." for d in ds], score_threshold=threshold
                )
            )
            for q, ds in RUN.items()
        )


def test_every_printed_threshold_pasted_back_keeps_its_row(
    scorer: Scorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, run = write_dataset(tmp_path / "data", RELEVANT)
    status, out, _ = calibrate(capsys, scorer.url, folder, run, "--rows", "20", "--target-recall", "1.0")
    assert status == 0
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split() == ["threshold", "kept", "precision", "recall", "no", "doc"]
    assert len(rows) == len(SCORES)  # one row per distinct score
    for row in rows:
        printed, kept = row.split()[:2]
        assert float(printed) > 0 or kept == str(len(SCORES)), row  # nothing tiny printed as 0
        assert kept_by(scorer.url, float(printed)) == int(kept), row
    chosen = re.search(r"score_threshold=(\S+) for recall", out)
    assert chosen is not None
    assert kept_by(scorer.url, float(chosen.group(1))) == 5  # all but d4 (1e-21): down to d3, 2.5e-20


def test_json_thresholds_paste_back_too(
    scorer: Scorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, run = write_dataset(tmp_path / "data", RELEVANT)
    status, out, _ = calibrate(capsys, scorer.url, folder, run, "--json")
    assert status == 0
    for cut in json.loads(out)["cuts"]:
        assert kept_by(scorer.url, cut["threshold"]) == cut["kept"]


def test_no_relevant_document_is_refused_before_scoring(
    scorer: Scorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, run = write_dataset(tmp_path / "data", {})
    status, out, err = calibrate(capsys, scorer.url, folder, run)
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1 and "relevant" in err and "qrels" in err
    assert scorer.calls == []  # refused before a single document was scored


@pytest.mark.parametrize("where", ["missing folder", "a folder", "read-only folder"])
def test_an_unwritable_plot_is_refused_before_scoring(
    scorer: Scorer, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    pytest.importorskip("PIL.Image")
    folder, run = write_dataset(tmp_path / "data", RELEVANT)
    plot = {"missing folder": tmp_path / "nowhere" / "c.png", "a folder": tmp_path}.get(where)
    if plot is None:
        if os.geteuid() == 0:
            pytest.skip("root may write into a read-only folder")
        (tmp_path / "locked").mkdir(mode=0o500)
        plot = tmp_path / "locked" / "c.png"
    status, out, err = calibrate(capsys, scorer.url, folder, run, "--plot", str(plot))
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and "--plot" in err
    assert scorer.calls == []


def test_a_plot_that_fails_late_still_prints_the_results_first(
    scorer: Scorer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("PIL.Image")
    folder, run = write_dataset(tmp_path / "data", RELEVANT)
    (tmp_path / "late").mkdir()
    scorer.on_call.append(lambda: shutil.rmtree(tmp_path / "late", ignore_errors=True))
    # The folder was there when checked; it is gone by the time the chart is written.
    status, out, err = calibrate(
        capsys, scorer.url, folder, run, "--json", "--plot", str(tmp_path / "late" / "c.png")
    )
    assert status == 1
    assert json.loads(out)["cuts"]  # the results came out first
    assert err.splitlines()[-1].startswith("qwen-rerank: error: ") and "cannot write the chart" in err
