"""The evaluation module: loading BEIR data, candidate selection, metrics checked against hand computation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.tools.evaluation import (
    METRICS,
    DataFormatError,
    compute_metrics,
    evaluate,
    format_table,
    load_dataset,
    load_run,
    rerank_candidates,
    select_candidates,
    write_trec,
)
from tests.helpers import TINY_BEIR, TINY_RUN, first_stage_top_k, hand_metrics, parse_trec, read_qrels

# --- metrics ---------------------------------------------------------------------------------------------


def test_metrics_match_values_worked_out_by_hand() -> None:
    qrels = {
        "a": {"r2": 2, "r1": 1, "r3": 1, "n1": 0},
        "b": {"late": 1},
        "c": {"x": 1},  # judged, but nothing retrieved: counts as 0
    }
    noise = [f"n{i}" for i in range(2, 12)]
    rankings = {
        # relevant at ranks 2 (gain 2) and 5 (gain 1) and 12 (beyond the cut); n1 is judged non-relevant
        "a": [
            "n1",
            "r2",
            noise[0],
            noise[1],
            "r1",
            noise[2],
            noise[3],
            noise[4],
            noise[5],
            noise[6],
            noise[7],
            "r3",
        ],
        # the only relevant document at rank 11
        "b": [*noise, "late"],
        # a ranking for a query without qrels does not count
        "unjudged": ["x", "late"],
    }
    got = compute_metrics(qrels, rankings)

    ndcg_a = (2 / math.log2(3) + 1 / math.log2(6)) / (2 + 1 / math.log2(3) + 1 / math.log2(4))
    map_a = (1 / 2 + 2 / 5) / 3
    expected = {
        "ndcg_at_10": ndcg_a / 3,
        "map_at_10": map_a / 3,
        "mrr_at_10": (1 / 2) / 3,
        "recall_at_10": (2 / 3) / 3,
        "recall_at_100": (1 + 1) / 3,
    }
    assert list(got) == list(METRICS)
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    assert got == pytest.approx(hand_metrics(qrels, rankings), abs=1e-12)


def test_metrics_follow_the_given_order_not_document_ids() -> None:
    # pytrec_eval breaks score ties by document id; our lists must be evaluated in our order.
    qrels = {"q": {"a": 1}}
    assert compute_metrics(qrels, {"q": ["z", "a"]})["mrr_at_10"] == pytest.approx(0.5)
    assert compute_metrics(qrels, {"q": ["a", "z"]})["mrr_at_10"] == pytest.approx(1.0)


def test_perfect_ranking_scores_one_and_metrics_are_fractions() -> None:
    dataset = load_dataset(TINY_BEIR)
    perfect = {q: sorted(rels, key=lambda d: -rels[d]) for q, rels in dataset.qrels.items()}
    assert compute_metrics(dataset.qrels, perfect) == dict.fromkeys(METRICS, 1.0)
    first = compute_metrics(dataset.qrels, first_stage_top_k(100))
    assert all(0.0 <= value <= 1.0 for value in first.values())
    assert first == pytest.approx(
        hand_metrics(read_qrels(TINY_BEIR / "qrels" / "test.tsv"), first_stage_top_k(100))
    )


def test_graded_relevance_at_the_range_edges_is_measured_correctly() -> None:
    # The one relevant document first: MRR@10 is 1, whatever its grade; the range's ends are exact.
    for grade in (1, 2, 1000):
        metrics = compute_metrics({"q": {"a": grade, "b": 0, "c": -1000}}, {"q": ["a", "b", "c"]})
        assert metrics["mrr_at_10"] == 1.0
        assert metrics["ndcg_at_10"] == pytest.approx(1.0)
    # Two grades: the higher first is ideal, the lower first is not.
    best = compute_metrics({"q": {"a": 1000, "b": 1}}, {"q": ["a", "b"]})["ndcg_at_10"]
    worse = compute_metrics({"q": {"a": 1000, "b": 1}}, {"q": ["b", "a"]})["ndcg_at_10"]
    assert best == pytest.approx(1.0) and worse < 0.7


@pytest.mark.parametrize("relevance", [2**31, 1001, -1001, 10**8, True, 1.5])
def test_compute_metrics_rejects_relevance_outside_the_range(relevance: object) -> None:
    with pytest.raises(InvalidInputError, match=r"qrels\['q'\]\['a'\]: relevance must be an integer"):
        compute_metrics({"q": {"a": relevance}}, {"q": ["a"]})  # type: ignore[dict-item]


def test_compute_metrics_rejects_empty_qrels() -> None:
    with pytest.raises(InvalidInputError, match="qrels is empty"):
        compute_metrics({}, {"q": ["a"]})


# --- loading ---------------------------------------------------------------------------------------------


def test_tiny_dataset_loads_with_mteb_document_text() -> None:
    dataset = load_dataset(TINY_BEIR)
    assert (len(dataset.corpus), len(dataset.queries), len(dataset.qrels)) == (36, 7, 6)
    assert dataset.corpus["c1"].startswith("Beijing Beijing is the capital")  # title + " " + text
    assert dataset.corpus["c4"].startswith("Nanjing served")  # empty title: the text alone
    assert dataset.corpus["c2"].startswith("北京 北京是中华人民共和国的首都")
    assert dataset.queries["q5"] == "大熊猫主要吃什么？"
    assert dataset.qrels["q4"] == {"p1": 2, "p2": 2, "p3": 2, "p5": 1}
    assert load_dataset(TINY_BEIR, "dev").qrels == {"q7": {"o1": 2, "o2": 2}}


def _copy_dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(TINY_BEIR, folder)
    return folder


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


BAD_DATA = [
    ("corpus.jsonl", 3, '{"_id": "c3", "text": "unterminated', "corpus.jsonl:3: not valid JSON"),
    ("corpus.jsonl", 2, '{"_id": "c2", "title": "t"}', "corpus.jsonl:2: 'text' must be a string"),
    (
        "corpus.jsonl",
        4,
        '{"_id": "c1", "text": "again"}',
        "corpus.jsonl:4: duplicate _id 'c1' (first on line 1)",
    ),
    ("corpus.jsonl", 5, '["c5", "a list"]', "corpus.jsonl:5: expected a JSON object"),
    ("corpus.jsonl", 6, '{"text": "no id"}', "corpus.jsonl:6: '_id' must be a string"),
    ("queries.jsonl", 2, '{"_id": "q2", "text": "   "}', "queries.jsonl:2: query 'q2' is empty"),
    ("qrels/test.tsv", 3, "q1\tnope\t1", "test.tsv:3: unknown document id 'nope' (not in corpus.jsonl)"),
    ("qrels/test.tsv", 4, "q99\tc1\t1", "test.tsv:4: unknown query id 'q99' (not in queries.jsonl)"),
    ("qrels/test.tsv", 2, "q1\tc1\thigh", "test.tsv:2: score must be an integer"),
    ("qrels/test.tsv", 5, "q2\tv1", "test.tsv:5: expected 3 fields"),
    ("qrels/test.tsv", 6, "q2\tv1\t1", "test.tsv:6: ('q2', 'v1') is judged twice"),
    (
        "qrels/test.tsv",
        2,
        "q1\tc1\t99999999999",
        "test.tsv:2: relevance must be an integer from -1000 to 1000",
    ),
    (
        "qrels/test.tsv",
        3,
        "q1\tc2\t2147483648",
        "test.tsv:3: relevance must be an integer from -1000 to 1000",
    ),
    ("qrels/test.tsv", 4, "q1\tc4\t100000000", "test.tsv:4: relevance must be an integer from -1000 to 1000"),
    ("qrels/test.tsv", 2, "q1\tc1\t-1001", "test.tsv:2: relevance must be an integer from -1000 to 1000"),
]


@pytest.mark.parametrize(("name", "line", "text", "message"), BAD_DATA)
def test_bad_dataset_lines_are_named_by_file_and_line(
    tmp_path: Path, name: str, line: int, text: str, message: str
) -> None:
    folder = _copy_dataset(tmp_path)
    _replace_line(folder / name, line, text)
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder)
    assert message in str(info.value)
    assert info.value.path.endswith(Path(name).name)
    assert info.value.line == line


BAD_RUN = [
    (5, "q1 Q0 nope 5 9.0 run", "first_stage.trec:5: unknown document id 'nope'"),
    (7, "q99 Q0 c1 7 9.0 run", "first_stage.trec:7: unknown query id 'q99'"),
    (2, "q1 Q0 c5 2 17.50", "first_stage.trec:2: expected 6 fields"),
    (3, "q1 Q0 c4 3 high run", "first_stage.trec:3: score must be a finite number"),
    (4, "q1 Q0 c4 4 nan run", "first_stage.trec:4: score must be a finite number"),
    (6, "q1 Q0 c3 six 9.0 run", "first_stage.trec:6: rank must be an integer"),
    (
        8,
        "q1 Q0 c3 8 9.0 run",
        "first_stage.trec:8: document 'c3' is listed twice for query 'q1' (first on line 1)",
    ),
]


@pytest.mark.parametrize(("line", "text", "message"), BAD_RUN)
def test_bad_run_lines_are_named_by_file_and_line(tmp_path: Path, line: int, text: str, message: str) -> None:
    dataset = load_dataset(TINY_BEIR)
    run = tmp_path / "first_stage.trec"
    shutil.copy(TINY_RUN, run)
    _replace_line(run, line, text)
    with pytest.raises(DataFormatError, match=None) as info:
        load_run(run, queries=dataset.queries, corpus=dataset.corpus)
    assert message in str(info.value)


def test_missing_files_and_splits_are_named(tmp_path: Path) -> None:
    folder = _copy_dataset(tmp_path)
    with pytest.raises(
        DataFormatError,
        match=r"qrels[/\\]train\.tsv: no qrels for split 'train' \(available splits: dev, test\)",
    ):
        load_dataset(folder, "train")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl: no such file"):
        load_dataset(folder)
    with pytest.raises(DataFormatError, match="no such dataset folder"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(DataFormatError, match=r"run\.trec: no such file"):
        load_run(tmp_path / "run.trec")


def test_undecodable_and_empty_files_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "run.trec"
    bad.write_bytes(b"q1 Q0 c1 1 2.0 run\nq1 Q0 \xff\xfe 2 1.0 run\n")
    with pytest.raises(DataFormatError, match=r"run\.trec:2: not UTF-8 text"):
        load_run(bad)
    bad.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="the run has no lines"):
        load_run(bad)


# --- candidates and reranking ----------------------------------------------------------------------------


def test_candidates_are_top_k_by_score_with_ties_in_file_order() -> None:
    run = {
        "q1": [("low", 1.0), ("high", 9.0), ("tie_first", 5.0), ("tie_second", 5.0), ("mid", 7.0)],
        "q7": [("x", 1.0)],
    }
    qrels = {"q1": {"high": 1}, "q2": {"y": 1}}
    candidates = select_candidates(run, qrels, 4)
    assert candidates.rankings == {"q1": ["high", "mid", "tie_first", "tie_second"], "q2": []}
    assert candidates.unjudged == ["q7"]
    assert candidates.missing == ["q2"]
    notes = candidates.notes("test")
    assert notes[0] == "run queries with no qrels in split 'test', not reranked: 1 (e.g. 'q7')."
    assert notes[1].startswith(
        "queries with qrels but no candidates in the run, counted as 0 on every measure: 1"
    )
    with pytest.raises(InvalidInputError, match="top_k must be a positive integer, got 0"):
        select_candidates(run, qrels, 0)


def test_rerank_candidates_orders_like_the_reranker(tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    dataset = load_dataset(TINY_BEIR)
    rankings = {q: ids[:6] for q, ids in first_stage_top_k(6).items() if q in dataset.qrels}
    reranked = rerank_candidates(tiny_reranker, dataset.queries, dataset.corpus, rankings)
    assert list(reranked) == list(rankings)
    for query_id, ids in rankings.items():
        expected = tiny_reranker.rerank(dataset.queries[query_id], [dataset.corpus[d] for d in ids])
        # Queries are scored together, so scores match one call per query within float rounding.
        assert [d for d, _ in reranked[query_id]] == [ids[r.index] for r in expected]
        assert [s for _, s in reranked[query_id]] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_evaluate_reports_both_columns_on_the_same_candidates(tiny_reranker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    notes: list[str] = []
    report = evaluate(tiny_reranker, TINY_BEIR, TINY_RUN, top_k=12, on_note=notes.append)
    qrels = read_qrels(TINY_BEIR / "qrels" / "test.tsv")
    candidates = {q: ids for q, ids in first_stage_top_k(12).items() if q in qrels}

    assert report.queries == 6
    assert (
        notes == report.notes == ["run queries with no qrels in split 'test', not reranked: 1 (e.g. 'q7')."]
    )
    assert report.first_stage == pytest.approx(hand_metrics(qrels, candidates), abs=1e-12)
    reranked_ids = {q: [d for d, _ in docs] for q, docs in report.reranked_run.items()}
    assert {q: sorted(ids) for q, ids in reranked_ids.items()} == {
        q: sorted(ids) for q, ids in candidates.items()
    }
    assert report.reranked == pytest.approx(hand_metrics(qrels, reranked_ids), abs=1e-12)
    assert report.as_dict() == {"first_stage": report.first_stage, "reranked": report.reranked, "queries": 6}
    json.dumps(report.as_dict())

    table = format_table(report).splitlines()
    assert table[0].split() == ["metric", "first", "stage", "reranked", "change"]
    assert [line.split()[0] for line in table[1:6]] == list(METRICS)
    assert table[1].split()[1:] == [
        f"{report.first_stage['ndcg_at_10']:.4f}",
        f"{report.reranked['ndcg_at_10']:.4f}",
        f"{report.reranked['ndcg_at_10'] - report.first_stage['ndcg_at_10']:+.4f}",
    ]
    assert table[6] == "6 queries, top 12 first-stage candidates each"
    one = evaluate(tiny_reranker, TINY_BEIR, {"q1": report.reranked_run["q1"][:1]}, top_k=5)
    assert format_table(one).splitlines()[-1] == (
        "6 queries, at most 1 first-stage candidate each (the run has fewer than 5)"
    )

    out = tmp_path / "reranked.trec"
    write_trec(out, report.reranked_run)
    assert parse_trec(out) == report.reranked_run
    ranks = [int(line.split()[3]) for line in out.read_text().splitlines() if line.startswith("q1 ")]
    assert ranks == list(range(1, 13))
