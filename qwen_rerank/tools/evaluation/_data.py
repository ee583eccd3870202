"""Reading a BEIR-layout dataset and TREC runs, and writing runs: bad data is a `DataFormatError`.

Every problem in a file is reported with the file and the line (`path:line: ...`),
never skipped; see [`qwen_rerank.tools.evaluation`][] for the layouts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_rerank.exceptions import InvalidInputError

__all__ = [
    "RELEVANCE_RANGE",
    "DataFormatError",
    "Dataset",
    "Run",
    "document_text",
    "load_corpus",
    "load_dataset",
    "load_qrels",
    "load_queries",
    "load_run",
    "relevance_message",
    "relevance_ok",
    "write_trec",
]

RELEVANCE_RANGE: tuple[int, int] = (-1000, 1000)
"""The qrels relevance values accepted, inclusive: pytrec_eval handles these exactly, in little memory."""

Run = dict[str, list[tuple[str, float]]]
"""A ranked run: query id -> [(document id, score)], best first."""


class DataFormatError(InvalidInputError):
    """A dataset or run file is missing or malformed.

    The message starts with `path:line:` (or `path:` for the file as a
    whole); `path` and `line` are also attributes.
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


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
        if not relevance_ok(int(score)):
            raise DataFormatError(path, number, relevance_message(score))
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


def write_trec(
    path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "qwen-rerank"
) -> None:
    """Write a run in TREC format, ranks from 1 in the order given, scores exact."""
    with open(path, "w", encoding="utf-8") as out:
        for query_id, docs in run.items():
            for rank, (doc_id, score) in enumerate(docs, start=1):
                out.write(f"{query_id} Q0 {doc_id} {rank} {score!r} {tag}\n")


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


def relevance_ok(value: int) -> bool:
    return RELEVANCE_RANGE[0] <= value <= RELEVANCE_RANGE[1]


def relevance_message(value: object) -> str:
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
