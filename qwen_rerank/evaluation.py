"""MTEB-style evaluation of a reranker: a BEIR-layout dataset, a first-stage run, pytrec_eval.

The pieces are plain functions, so a notebook or a script can use them one by
one; `evaluate` chains them and ``qwen-rerank eval`` prints its report:

```python
from qwen_rerank import create_reranker
from qwen_rerank.evaluation import evaluate, format_table

report = evaluate(create_reranker(), "data/scifact", "data/scifact/bm25.trec")
print(format_table(report))
```

**Data.** A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``,
``text``), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv``
(``query-id``, ``corpus-id``, ``score``, with a header line). A document's
text is ``title + " " + text``, stripped, as MTEB builds it. The first-stage
run is a TREC run file: ``qid Q0 docid rank score tag`` per line.

**Candidates.** Each judged query's candidates are its ``top_k`` documents by
first-stage score (ties keep file order). Queries of the run without qrels in
the split are not reranked; judged queries missing from the run count with
every measure 0. Both cases are reported as notes, never dropped silently.

**Measures.** `METRICS`, computed by pytrec_eval (the library MTEB uses)
over the judged queries and averaged: ``ndcg_cut_10``, ``map_cut_10``,
``recall_10`` and ``recall_100`` on the candidate list, ``recip_rank`` on the
list cut to its top 10 (MRR@10). The first-stage column uses the same top-k
candidates in first-stage order, so both columns compare like with like.
Each list is evaluated in exactly the order given: ties in score never let
pytrec_eval reorder it.

**Relevance** in qrels is an integer from -1000 to 1000 (`RELEVANCE_RANGE`);
0 and below count as not relevant, and graded levels above 1 weigh more in
nDCG. Values outside that range are rejected with the file and line, rather
than handed to pytrec_eval, which allocates memory per level and overflows
near 2**31.

**Bad data** raises [`DataFormatError`][qwen_rerank.exceptions.DataFormatError] naming the file and line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._requests import progress_bar
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import DataFormatError, InvalidInputError
from qwen_rerank.results import rank

__all__ = [
    "DEFAULT_BATCH_QUERIES",
    "METRICS",
    "RELEVANCE_RANGE",
    "Candidates",
    "DataFormatError",
    "Dataset",
    "EvalReport",
    "compute_metrics",
    "document_text",
    "evaluate",
    "format_table",
    "load_corpus",
    "load_dataset",
    "load_qrels",
    "load_queries",
    "load_run",
    "rerank_candidates",
    "select_candidates",
    "write_trec",
]

METRICS: tuple[str, ...] = ("ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100")
"""The measures reported, each a mean over judged queries, in [0, 1]."""

# Our name -> pytrec_eval's measure request and result key, on the full candidate list.
_FULL_LIST_MEASURES = {
    "ndcg_at_10": ("ndcg_cut.10", "ndcg_cut_10"),
    "map_at_10": ("map_cut.10", "map_cut_10"),
    "recall_at_10": ("recall.10", "recall_10"),
    "recall_at_100": ("recall.100", "recall_100"),
}
_MRR_DEPTH = 10
RELEVANCE_RANGE: tuple[int, int] = (-1000, 1000)
"""The qrels relevance values accepted, inclusive: pytrec_eval handles these exactly, in little memory."""

DEFAULT_BATCH_QUERIES = 64
"""Queries per [`score_many`][qwen_rerank.Reranker.score_many] call in `evaluate`."""

Run = dict[str, list[tuple[str, float]]]
"""A ranked run: query id -> [(document id, score)], best first."""


@dataclass(frozen=True)
class Dataset:
    """A BEIR-layout dataset, loaded and cross-checked.

    Attributes:
        corpus: Document id -> text (title and text joined, as MTEB does).
        queries: Query id -> text.
        qrels: Query id -> {document id: relevance}, for one split.
        split: The qrels split, e.g. ``"test"``.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str


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


def document_text(title: str | None, text: str) -> str:
    """A corpus entry as the reranker sees it: ``title + " " + text``, stripped (MTEB's rule)."""
    return f"{title} {text}".strip() if title else text.strip()


def load_corpus(path: str | Path) -> dict[str, str]:
    """Read ``corpus.jsonl``: document id -> `document_text`."""
    corpus: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, record in _read_jsonl(path):
        doc_id = _record_id(path, number, record, first_line)
        text = _record_str(path, number, record, "text")
        title = record.get("title")
        if title is not None and not isinstance(title, str):
            raise DataFormatError(path, number, f"'title' must be a string, got {type(title).__name__}.")
        corpus[doc_id] = document_text(title, text)
    if not corpus:
        raise DataFormatError(path, None, "the corpus has no documents.")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl``: query id -> text. An empty query is an error."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, record in _read_jsonl(path):
        query_id = _record_id(path, number, record, first_line)
        text = _record_str(path, number, record, "text")
        if not text.strip():
            raise DataFormatError(path, number, f"query {query_id!r} is empty.")
        queries[query_id] = text
    if not queries:
        raise DataFormatError(path, None, "the file has no queries.")
    return queries


def load_qrels(
    path: str | Path,
    *,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
) -> dict[str, dict[str, int]]:
    """Read ``qrels/<split>.tsv``: query id -> {document id: relevance}.

    The first line is the ``query-id corpus-id score`` header. Fields are
    tab-separated (whitespace-separated if a line has no tab). Given
    ``queries`` and ``corpus``, every id must be in them.
    """
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _read_lines(path):
        fields = _split_fields(line, tabs=True)
        if number == 1 and len(fields) == 3 and not _is_int(fields[2]):
            continue  # the header line
        if len(fields) != 3:
            raise DataFormatError(
                path, number, f"expected 3 fields 'query-id corpus-id score', got {len(fields)}: {line!r}."
            )
        query_id, doc_id, score = fields
        if not _is_int(score):
            raise DataFormatError(path, number, f"score must be an integer, got {score!r}.")
        if not _relevance_ok(int(score)):
            raise DataFormatError(path, number, _relevance_message(score))
        _check_known(path, number, "query", query_id, queries, "queries.jsonl")
        _check_known(path, number, "document", doc_id, corpus, "corpus.jsonl")
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise DataFormatError(path, number, f"({query_id!r}, {doc_id!r}) is judged twice.")
        judged[doc_id] = int(score)
    if not qrels:
        raise DataFormatError(path, None, "the file has no judgments.")
    return qrels


def load_run(
    path: str | Path,
    *,
    queries: Mapping[str, str] | None = None,
    corpus: Mapping[str, str] | None = None,
) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``): query id -> [(docid, score)] in file order.

    Given ``queries`` and ``corpus``, every id must be in them. A document
    listed twice for one query is an error.
    """
    run: Run = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in _read_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise DataFormatError(
                path, number, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: {line!r}."
            )
        query_id, _, doc_id, rank, score_text, _ = fields
        if not _is_int(rank):
            raise DataFormatError(path, number, f"rank must be an integer, got {rank!r}.")
        try:
            score = float(score_text)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise DataFormatError(path, number, f"score must be a finite number, got {score_text!r}.")
        _check_known(path, number, "query", query_id, queries, "queries.jsonl")
        _check_known(path, number, "document", doc_id, corpus, "corpus.jsonl")
        if (query_id, doc_id) in seen:
            raise DataFormatError(
                path,
                number,
                f"document {doc_id!r} is listed twice for query {query_id!r} "
                f"(first on line {seen[query_id, doc_id]}).",
            )
        seen[query_id, doc_id] = number
        run.setdefault(query_id, []).append((doc_id, score))
    if not run:
        raise DataFormatError(path, None, "the run has no lines.")
    return run


def load_dataset(directory: str | Path, split: str = "test") -> Dataset:
    """Load and cross-check a BEIR-layout folder (see the module docstring)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataFormatError(folder, None, "no such dataset folder.")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        hint = (
            f"available splits: {', '.join(available)}" if available else "the qrels folder has no .tsv file"
        )
        raise DataFormatError(qrels_path, None, f"no qrels for split {split!r} ({hint}).")
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(qrels_path, queries=queries, corpus=corpus)
    return Dataset(corpus=corpus, queries=queries, qrels=qrels, split=split)


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


def compute_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Mean of each of `METRICS` over the queries of ``qrels``, by pytrec_eval.

    ``rankings`` maps a query id to document ids, best first; each list is
    evaluated in exactly that order. A judged query with no ranking scores 0.
    """
    pytrec_eval = require("pytrec_eval", "eval")
    judged = {q: dict(docs) for q, docs in qrels.items()}
    if not judged:
        raise InvalidInputError("qrels is empty: there is no judged query to evaluate.")
    for query_id, docs in judged.items():
        for doc_id, relevance in docs.items():
            if isinstance(relevance, bool) or not isinstance(relevance, int) or not _relevance_ok(relevance):
                raise InvalidInputError(f"qrels[{query_id!r}][{doc_id!r}]: {_relevance_message(relevance)}")
    full = {q: _ordered_scores(rankings.get(q, ())) for q in judged}
    cut = {q: _ordered_scores(rankings.get(q, ())[:_MRR_DEPTH]) for q in judged}
    full = {q: scores for q, scores in full.items() if scores}
    cut = {q: scores for q, scores in cut.items() if scores}
    requests = {request for request, _ in _FULL_LIST_MEASURES.values()}
    per_query = pytrec_eval.RelevanceEvaluator(judged, requests).evaluate(full)
    mrr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(cut)
    means: dict[str, float] = {}
    for name in METRICS:
        if name == "mrr_at_10":
            values = [mrr.get(q, {}).get("recip_rank", 0.0) for q in judged]
        else:
            key = _FULL_LIST_MEASURES[name][1]
            values = [per_query.get(q, {}).get(key, 0.0) for q in judged]
        means[name] = float(sum(values) / len(values))
    return means


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


def write_trec(
    path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "qwen-rerank"
) -> None:
    """Write a run in TREC format, ranks from 1 in the order given, scores exact."""
    with open(path, "w", encoding="utf-8") as out:
        for query_id, docs in run.items():
            for rank, (doc_id, score) in enumerate(docs, start=1):
                out.write(f"{query_id} Q0 {doc_id} {rank} {score!r} {tag}\n")


def _ordered_scores(doc_ids: Sequence[str]) -> dict[str, float]:
    # Strictly decreasing stand-in scores: pytrec_eval sorts by score (ties by
    # document id), so this makes it evaluate the list in exactly our order.
    return {doc_id: float(len(doc_ids) - position) for position, doc_id in enumerate(doc_ids)}


def _read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; file problems become DataFormatError."""
    try:
        with open(path, "rb") as raw:
            for number, data in enumerate(raw, start=1):
                try:
                    line = data.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise DataFormatError(path, number, "not UTF-8 text.") from exc
                if line.strip():
                    yield number, line.rstrip("\r\n")
    except FileNotFoundError as exc:
        raise DataFormatError(path, None, "no such file.") from exc
    except OSError as exc:
        raise DataFormatError(path, None, f"cannot read the file ({exc.strerror or exc}).") from exc


def _read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, number, f"not valid JSON ({exc.msg}).") from exc
        if not isinstance(record, dict):
            raise DataFormatError(path, number, f"expected a JSON object, got {type(record).__name__}.")
        yield number, record


def _record_id(path: str | Path, number: int, record: Mapping[str, Any], first_line: dict[str, int]) -> str:
    raw = record.get("_id")
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        found = "none" if raw is None else f"{raw!r}"
        raise DataFormatError(path, number, f"'_id' must be a string, got {found}.")
    record_id = str(raw)
    if not record_id or record_id != record_id.strip() or any(c.isspace() for c in record_id):
        raise DataFormatError(path, number, f"'_id' must be non-empty with no whitespace, got {record_id!r}.")
    if record_id in first_line:
        raise DataFormatError(
            path, number, f"duplicate _id {record_id!r} (first on line {first_line[record_id]})."
        )
    first_line[record_id] = number
    return record_id


def _record_str(path: str | Path, number: int, record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        found = "nothing" if value is None else type(value).__name__
        raise DataFormatError(path, number, f"{key!r} must be a string, got {found}.")
    return value


def _check_known(
    path: str | Path, number: int, kind: str, value: str, known: Mapping[str, str] | None, source: str
) -> None:
    if known is not None and value not in known:
        raise DataFormatError(path, number, f"unknown {kind} id {value!r} (not in {source}).")


def _split_fields(line: str, *, tabs: bool) -> list[str]:
    if tabs and "\t" in line:
        return [part.strip() for part in line.split("\t")]
    return line.split()


def _relevance_ok(value: int) -> bool:
    return RELEVANCE_RANGE[0] <= value <= RELEVANCE_RANGE[1]


def _relevance_message(value: object) -> str:
    low, high = RELEVANCE_RANGE
    return (
        f"relevance must be an integer from {low} to {high} (0 or less is not relevant, higher "
        f"grades weigh more in nDCG), got {value}."
    )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
