"""qwen_rerank.integrations.mteb through a real, offline ``mteb.evaluate``, tiny model and fake server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mteb
import numpy as np
import pytest
from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores
from mteb.models import CrossEncoderProtocol

from qwen_rerank import DEFAULT_INSTRUCTION, InvalidInputError, Reranker
from qwen_rerank.cli import main as cli_main
from qwen_rerank.integrations.mteb import MTEBReranker, local_reranking_task
from qwen_rerank.tools.evaluation import evaluate
from tests.helpers import ROOT, Recorder

TINY_BEIR = ROOT / "examples" / "data" / "tiny_beir"
FIRST_STAGE = TINY_BEIR / "first_stage.trec"


def test_mteb_evaluate_matches_qwen_rerank_eval(
    tiny_model_path: Path, tiny_reranker: Reranker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli_main(
            [
                *("eval", str(TINY_BEIR), "--run", str(FIRST_STAGE), "--top-k", "10"),
                *("--model", str(tiny_model_path), "--device", "cpu", "--json"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    ours = printed["reranked"]["ndcg_at_10"]
    report = evaluate(tiny_reranker, TINY_BEIR, FIRST_STAGE, top_k=10)
    assert report.reranked["ndcg_at_10"] == pytest.approx(ours, abs=1e-12)

    task = local_reranking_task(TINY_BEIR, FIRST_STAGE, top_k=10)
    model = MTEBReranker(reranker=Recorder(tiny_reranker))
    assert isinstance(model, CrossEncoderProtocol)
    results = mteb.evaluate(model, task, cache=None, prediction_folder=tmp_path, show_progress_bar=False)
    (task_result,) = results.task_results
    (scores,) = task_result.scores["test"]
    # MTEB reports metrics rounded to 5 decimals ...
    assert scores["ndcg_at_10"] == pytest.approx(round(ours, 5), abs=1e-9)
    assert scores["ndcg_at_10"] != pytest.approx(printed["first_stage"]["ndcg_at_10"], abs=1e-3)
    # ... and its own metric code, on its own predictions, agrees with ours within 1e-6 unrounded.
    (predictions_file,) = tmp_path.glob("*.json")
    predictions = json.loads(predictions_file.read_text())["default"]["test"]
    per_query = calculate_retrieval_scores(predictions, judged_qrels(), [10]).all_scores
    exact = sum(s["ndcg_cut_10"] for s in per_query.values()) / len(per_query)
    assert exact == pytest.approx(ours, abs=1e-6)
    # Same candidates, same scores.
    assert set(predictions) == set(report.reranked_run)
    for query_id, ranked in report.reranked_run.items():
        assert predictions[query_id] == pytest.approx(dict(ranked), abs=1e-6)
    # One backend call per query, with the default instruction.
    assert len(model.reranker.calls) == len(report.reranked_run)  # type: ignore[attr-defined]
    assert {instruction for _, _, instruction in model.reranker.calls} == {DEFAULT_INSTRUCTION}  # type: ignore[attr-defined]


def judged_qrels() -> dict[str, dict[str, int]]:
    from qwen_rerank.tools.evaluation import load_dataset

    return {q: dict(d) for q, d in load_dataset(TINY_BEIR).qrels.items()}


def batches(rows: Sequence[dict[str, Any]], size: int = 3) -> list[dict[str, list[Any]]]:
    """Rows as MTEB's collated batches: a dict of columns per batch."""
    out = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        out.append({key: [row[key] for row in chunk] for key in chunk[0]})
    return out


def test_predict_groups_pairs_by_query_and_picks_the_instruction(tiny_reranker: Reranker) -> None:
    recorder = Recorder(tiny_reranker)
    model = MTEBReranker(reranker=recorder)
    queries = ["q one"] * 4 + ["q two"] * 3
    documents = [f"document {i}" for i in range(7)]
    metadata = local_reranking_task(TINY_BEIR, FIRST_STAGE, top_k=3).metadata
    out = model.predict(
        batches([{"text": q} for q in queries]),
        batches([{"text": d} for d in documents]),
        task_metadata=metadata,
        hf_split="test",
        hf_subset="default",
    )
    assert isinstance(out, np.ndarray) and out.shape == (7,)
    assert [call[0] for call in recorder.calls] == ["q one", "q two"]
    expected = tiny_reranker.score("q one", documents[:4]) + tiny_reranker.score("q two", documents[4:])
    assert out.tolist() == pytest.approx(expected, abs=1e-6)

    # The task's prompt, then each row's own instruction (MTEB appends it to "text", keeps "query").
    prompted = local_reranking_task(TINY_BEIR, FIRST_STAGE, top_k=3, prompt="Find the capital").metadata
    recorder.calls.clear()
    rows = [
        {"text": "q one Be brief", "query": "q one", "instruction": "Be brief"},
        {"text": "q one Be brief", "query": "q one", "instruction": "Be brief"},
        {"text": "q two", "query": "q two", "instruction": None},
    ]
    model.predict(
        batches(rows),
        batches([{"text": d} for d in documents[:3]]),
        task_metadata=prompted,
        hf_split="test",
        hf_subset="default",
    )
    assert [(q, instruction) for q, _, instruction in recorder.calls] == [
        ("q one", "Be brief"),
        ("q two", "Find the capital"),
    ]
    with pytest.raises(InvalidInputError, match="row-aligned"):
        model.predict(
            batches([{"text": "q"}]),
            batches([{"text": "a"}, {"text": "b"}]),
            task_metadata=metadata,
            hf_split="test",
            hf_subset="default",
        )


def test_options_reach_a_vllm_server(fake_vllm: Any) -> None:
    model = MTEBReranker(fake_vllm.served_model_name, base_url=fake_vllm.url)
    task = local_reranking_task(TINY_BEIR, FIRST_STAGE, top_k=5, name="TinyBeirRemote")
    results = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    assert 0.0 <= results.task_results[0].get_score() <= 1.0
    bodies = [r.body for r in fake_vllm.rerank_requests]
    assert len(bodies) == 6  # one request per judged query of the test split
    assert {b["model"] for b in bodies} == {fake_vllm.served_model_name}
    assert all(len(b["documents"]) == 5 for b in bodies)


def test_model_meta(tiny_model_path: Path, tiny_reranker: Reranker) -> None:
    local = MTEBReranker(tiny_model_path, device="cpu")  # a pathlib.Path
    meta = local.mteb_model_meta
    assert meta.name == f"local/{tiny_model_path.name}" and "cross-encoder" in meta.model_type
    wrapped = MTEBReranker("Qwen/Qwen3-Reranker-4B", reranker=tiny_reranker)
    assert wrapped.mteb_model_meta.name == "Qwen/Qwen3-Reranker-4B"
    assert wrapped.mteb_model_meta.n_parameters  # MTEB's own entry for the checkpoint
    with pytest.raises(InvalidInputError, match="ready reranker"):
        MTEBReranker("Qwen/Qwen3-Reranker-4B", device="cpu", reranker=tiny_reranker)
