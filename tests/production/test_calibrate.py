"""qwen-rerank calibrate on the bundled tiny_beir: the threshold meets its target, measured by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import InvalidInputError, Reranker
from qwen_rerank.cli import main
from qwen_rerank.tools.calibration import calibrate, curve, format_chart, format_cuts
from qwen_rerank.tools.evaluation import load_dataset
from tests.helpers import TINY_BEIR, TINY_RUN, first_stage_top_k, read_qrels


@pytest.fixture(scope="module")
def by_hand(tiny_reranker: Reranker) -> list[tuple[float, bool]]:
    """Each (score, relevant) of the test split's candidates: ``score`` per query, qrels read here."""
    qrels = read_qrels(TINY_BEIR / "qrels" / "test.tsv")
    texts = load_dataset(TINY_BEIR)
    pairs = []
    for query_id, doc_ids in first_stage_top_k(100).items():
        if query_id not in qrels:
            continue
        scores = tiny_reranker.score(texts.queries[query_id], [texts.corpus[d] for d in doc_ids])
        pairs += [(s, qrels[query_id].get(d, 0) > 0) for d, s in zip(doc_ids, scores, strict=True)]
    return pairs


def measured(pairs: list[tuple[float, bool]], threshold: float) -> tuple[float, float]:
    """Precision and recall of ``score >= threshold``, from the pairs alone."""
    kept = [relevant for score, relevant in pairs if score >= threshold]
    relevant = sum(r for _, r in pairs)
    return sum(kept) / len(kept), sum(kept) / relevant


def run_cli(capsys: pytest.CaptureFixture[str], tiny_model_path: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["calibrate", str(TINY_BEIR), "--run", str(TINY_RUN), "--model", str(tiny_model_path)]
    status = main([*argv, "--device", "cpu", *extra])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("target", [0.25, 0.5])
def test_threshold_for_a_target_precision_meets_it(
    capsys: pytest.CaptureFixture[str], tiny_model_path: Path, by_hand: Any, target: float
) -> None:
    status, out, _ = run_cli(capsys, tiny_model_path, "--json", "--target-precision", str(target))
    assert status == 0
    report = json.loads(out)
    chosen = report["chosen"]
    precision, recall = measured(by_hand, chosen["threshold"])
    assert precision >= target
    assert (precision, recall) == pytest.approx((chosen["precision"], chosen["recall"]))
    # Nothing lower reaches the target with more recall: the threshold is the best one for it.
    for cut in report["cuts"]:
        if cut["recall"] > chosen["recall"]:
            assert measured(by_hand, cut["threshold"])[0] < target


def test_threshold_for_a_target_recall_meets_it(
    capsys: pytest.CaptureFixture[str], tiny_model_path: Path, by_hand: Any
) -> None:
    status, out, _ = run_cli(capsys, tiny_model_path, "--json", "--target-recall", "0.9")
    assert status == 0
    chosen = json.loads(out)["chosen"]
    assert measured(by_hand, chosen["threshold"])[1] >= 0.9
    higher = [s for s, _ in by_hand if s > chosen["lowest"]]
    assert measured(by_hand, min(higher))[1] < 0.9  # the next score up would lose recall


def test_table_chart_and_png(
    capsys: pytest.CaptureFixture[str], tiny_model_path: Path, tmp_path: Path
) -> None:
    png = tmp_path / "calibration.png"
    status, out, err = run_cli(capsys, tiny_model_path, "--target-precision", "0.3", "--plot", str(png))
    assert status == 0
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split() == ["threshold", "kept", "precision", "recall", "no", "doc"]
    assert sum("<- chosen" in row for row in rows) == 1
    assert "P precision, R recall, E queries with no document" in out
    assert "holds for this model, instruction and corpus only" in out
    assert f"wrote {png}" in err
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (720, 420)


def test_calibrate_scores_through_score_many(tiny_reranker: Reranker, spans: Any) -> None:
    calibration = calibrate(tiny_reranker, TINY_BEIR, TINY_RUN, top_k=5, batch_queries=4)
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("qwen_rerank.score_many") == 2  # 6 judged queries, 4 at a time
    assert calibration.queries == 6 and calibration.candidates == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target-precision", "1.5"], "--target-precision must be between 0 and 1, got 1.5"),
        (["--top-k", "0"], "--top-k must be an integer of at least 1, got 0"),
        (["--rows", "1"], "--rows must be an integer of at least 2, got 1"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], tiny_model_path: Path, argv: list[str], message: str
) -> None:
    status, _, err = run_cli(capsys, tiny_model_path, *argv)
    assert status == 2
    assert message in err


def test_an_unreachable_target_exits_1(
    capsys: pytest.CaptureFixture[str], tiny_model_path: Path, tiny_reranker: Reranker, tmp_path: Path
) -> None:
    # One query, two documents, and the qrels mark relevant the one the model scores lower:
    # no threshold keeps only relevant documents.
    query, docs = "What is the capital of China?", ["Beijing is the capital of China.", "Bananas are yellow."]
    low = min(range(2), key=tiny_reranker.score(query, docs).__getitem__)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": query}) + "\n")
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(docs))
    )
    (tmp_path / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq\td{low}\t1\n")
    (tmp_path / "run.trec").write_text("q Q0 d0 1 2.0 bm25\nq Q0 d1 2 1.0 bm25\n")
    argv = ["calibrate", str(tmp_path), "--run", str(tmp_path / "run.trec"), "--model", str(tiny_model_path)]
    status = main([*argv, "--device", "cpu", "--target-precision", "1.0"])
    assert status == 1
    assert "no threshold reaches precision >= 1.0 on this data" in capsys.readouterr().err


def test_curve_by_hand() -> None:
    labelled = {
        "a": [(0.93, True), (0.61, False), (0.61, True)],  # a tie: both or neither are kept
        "b": [(0.47, True), (0.2, False)],
        "c": [],  # a judged query without candidates is always left with no document
    }
    calibration = curve(labelled)
    # Each threshold is the shortest decimal between a score and the next lower one.
    assert [c.threshold for c in calibration.cuts] == [0.9, 0.6, 0.4, 0.2]
    assert [c.lowest for c in calibration.cuts] == [0.93, 0.61, 0.47, 0.2]
    assert [c.kept for c in calibration.cuts] == [1, 3, 4, 5]
    for cut in calibration.cuts:
        kept = [r for docs in labelled.values() for s, r in docs if s >= cut.threshold]
        assert len(kept) == cut.kept  # the threshold keeps exactly that cut
    assert [c.precision for c in calibration.cuts] == pytest.approx([1.0, 2 / 3, 3 / 4, 3 / 5])
    assert [c.recall for c in calibration.cuts] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert [c.empty_share for c in calibration.cuts] == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert calibration.for_precision(0.7).lowest == 0.47  # precision 0.75 with recall 1
    assert calibration.for_recall(0.5).lowest == 0.61
    assert calibration.at(0.5).kept == 3 and calibration.at(0.95).kept == 0
    assert "<- chosen" in format_cuts(calibration.cuts, calibration.for_recall(0.5))
    assert "|" in format_chart(calibration, calibration.for_recall(0.5))
    with pytest.raises(InvalidInputError, match="none relevant"):
        curve({"a": [(0.5, False)]})
