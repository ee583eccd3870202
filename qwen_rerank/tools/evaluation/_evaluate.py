"""A first-stage run reranked and measured: candidate selection, reranking, `evaluate`, the table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._requests import progress_bar
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.results import rank
from qwen_rerank.tools.evaluation._data import Dataset, Run, load_dataset, load_run
from qwen_rerank.tools.evaluation._metrics import METRICS, compute_metrics

__all__ = [
    "DEFAULT_BATCH_QUERIES",
    "Candidates",
    "EvalReport",
    "evaluate",
    "format_table",
    "rerank_candidates",
    "select_candidates",
]

DEFAULT_BATCH_QUERIES = 64
"""Queries per [`score_many`][qwen_rerank.Reranker.score_many] call in `evaluate`."""


@dataclass(frozen=True)
class Candidates:
    """What gets reranked: each judged query's first-stage top-k.

    Attributes:
        rankings: Judged query id -> its candidate document ids, in first-stage
            order. Empty for a judged query that the run does not contain.
        unjudged: Run query ids with no qrels in the split: not reranked.
        missing: Judged query ids absent from the run: they count as 0.
    """

    rankings: dict[str, list[str]]
    unjudged: list[str]
    missing: list[str]

    def notes(self, split: str) -> list[str]:
        """One line per kind of query left out of reranking, with its count."""
        out = []
        if self.unjudged:
            out.append(
                f"run queries with no qrels in split {split!r}, not reranked: {len(self.unjudged)} "
                f"(e.g. {self.unjudged[0]!r})."
            )
        if self.missing:
            out.append(
                "queries with qrels but no candidates in the run, counted as 0 on every measure: "
                f"{len(self.missing)} (e.g. {self.missing[0]!r})."
            )
        return out


@dataclass(frozen=True)
class EvalReport:
    """The result of `evaluate`.

    Attributes:
        first_stage: Measure name -> mean value for the first-stage candidates.
        reranked: Measure name -> mean value after reranking.
        queries: Number of judged queries the means are over.
        reranked_run: Query id -> [(document id, reranker score)], best first.
        top_k: Candidates reranked per query (at most).
        notes: Queries left out of reranking, with counts (see `Candidates`).
    """

    first_stage: dict[str, float]
    reranked: dict[str, float]
    queries: int
    reranked_run: Run = field(repr=False)
    top_k: int = 100
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{"first_stage": {...}, "reranked": {...}, "queries": N}``: what ``--json`` prints."""
        return {
            "first_stage": dict(self.first_stage),
            "reranked": dict(self.reranked),
            "queries": self.queries,
        }


def select_candidates(
    run: Mapping[str, Sequence[tuple[str, float]]], qrels: Mapping[str, Any], top_k: int
) -> Candidates:
    """Each judged query's ``top_k`` documents by first-stage score; ties keep run order."""
    k = check_positive_int("top_k", top_k)
    rankings: dict[str, list[str]] = {}
    for query_id in qrels:
        entries = run.get(query_id, ())
        ordered = sorted(range(len(entries)), key=lambda i: -entries[i][1])
        rankings[query_id] = [entries[i][0] for i in ordered[:k]]
    return Candidates(
        rankings=rankings,
        unjudged=[q for q in run if q not in qrels],
        missing=[q for q in qrels if not run.get(q)],
    )


def rerank_candidates(
    reranker: Reranker,
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    rankings: Mapping[str, Sequence[str]],
    *,
    progress: bool = False,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
) -> Run:
    """Rerank each query's candidates: query id -> [(document id, score)], best first.

    Ties keep first-stage order. Queries go to the reranker ``batch_queries``
    at a time (see [`score_many`][qwen_rerank.Reranker.score_many]), so a local model
    packs short candidate lists into shared forward passes and a vLLM client
    keeps its replicas busy. ``progress`` shows a tqdm bar on stderr, counting
    documents and queries.
    """
    size = check_positive_int("batch_queries", batch_queries)
    require("tqdm", "eval")
    ids = list(rankings)
    requests = [(queries[q], [corpus[d] for d in rankings[q]]) for q in ids]
    # What the backend scores: a request's identical documents once; in chunk mode, windows (not known ahead).
    total = None if reranker.long_documents == "chunk" else sum(len(set(docs)) for _, docs in requests)
    reranked: Run = {}
    with progress_bar(len(ids), total, progress) as advance:
        for start in range(0, len(ids), size):
            batch = requests[start : start + size]
            scored = reranker.score_many(batch, progress=advance)
            for query_id, (_, documents), scores in zip(
                ids[start : start + size], batch, scored, strict=True
            ):
                doc_ids = rankings[query_id]
                reranked[query_id] = [(doc_ids[r.index], r.score) for r in rank(documents, scores)]
    return reranked


def evaluate(
    reranker: Reranker,
    dataset: Dataset | str | Path,
    run: Run | str | Path,
    *,
    top_k: int = 100,
    split: str = "test",
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
) -> EvalReport:
    """Rerank a first-stage run and measure both, MTEB-style (see the module docstring).

    Args:
        reranker: Any backend, e.g. from [`create_reranker`][qwen_rerank.create_reranker].
        dataset: A `Dataset` or a BEIR-layout folder.
        run: A parsed run (`load_run`) or a TREC run file.
        top_k: Candidates per query, by first-stage score. 100 matches the
            Qwen3-Reranker evaluation.
        split: The qrels split, when ``dataset`` is a folder.
        progress: Show a progress bar on stderr.
        on_note: Called with each note (queries not reranked, with counts)
            as soon as it is known; the notes are also in the report.
        batch_queries: Queries scored per call (see `rerank_candidates`);
            the results do not depend on it.

    Raises:
        DataFormatError: A file is missing or malformed; the message names the
            file and line.
        InvalidInputError: ``top_k`` or ``batch_queries`` is not a positive integer.
    """
    k = check_positive_int("top_k", top_k)
    check_positive_int("batch_queries", batch_queries)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split)
    parsed = load_run(run, queries=data.queries, corpus=data.corpus) if isinstance(run, (str, Path)) else run
    candidates = select_candidates(parsed, data.qrels, k)
    notes = candidates.notes(data.split)
    for note in notes:
        if on_note is not None:
            on_note(note)
    reranked = rerank_candidates(
        reranker,
        data.queries,
        data.corpus,
        candidates.rankings,
        progress=progress,
        batch_queries=batch_queries,
    )
    return EvalReport(
        first_stage=compute_metrics(data.qrels, candidates.rankings),
        reranked=compute_metrics(data.qrels, {q: [d for d, _ in docs] for q, docs in reranked.items()}),
        queries=len(data.qrels),
        reranked_run=reranked,
        top_k=k,
        notes=notes,
    )


def format_table(report: EvalReport) -> str:
    """The two columns side by side, with the change, as plain text."""
    lines = [f"{'metric':<15}{'first stage':>12}{'reranked':>10}{'change':>10}"]
    for name in METRICS:
        before, after = report.first_stage[name], report.reranked[name]
        lines.append(f"{name:<15}{before:>12.4f}{after:>10.4f}{after - before:>+10.4f}")
    depth = max((len(docs) for docs in report.reranked_run.values()), default=0)
    queries = f"{report.queries} {'query' if report.queries == 1 else 'queries'}"
    candidates = "candidate" if min(depth, report.top_k) == 1 else "candidates"
    if depth < report.top_k:
        lines.append(
            f"{queries}, at most {depth} first-stage {candidates} each "
            f"(the run has fewer than {report.top_k})"
        )
    else:
        lines.append(f"{queries}, top {report.top_k} first-stage {candidates} each")
    return "\n".join(lines)
