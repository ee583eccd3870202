"""`qwen-rerank rank`: rank documents for a query, from a file or stdin, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_rerank._validation import check_query, check_top_n
from qwen_rerank.cli._common import (
    UsageError,
    add_backend_options,
    build_reranker,
    check_backend_options,
    count,
    note,
    print_json,
    terminal_text,
)
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import describe
from qwen_rerank.results import RerankResult
from qwen_rerank.tools.demo import split_lines
from qwen_rerank.tools.evaluation import DataFormatError

__all__ = ["add_rank_command", "read_documents", "run_rank"]

_PREVIEW_CHARS = 100


def add_rank_command(commands: Any) -> None:
    """Add `rank` to the `qwen-rerank` subcommands (an argparse subparsers object)."""
    rank = commands.add_parser(
        "rank",
        help="rank documents for a query",
        description="Rank documents for a query and print them best first, with scores.",
    )
    add_backend_options(rank)
    rank.add_argument("--query", required=True, help="the query")
    rank.add_argument(
        "documents",
        nargs="?",
        default="-",
        metavar="DOCUMENTS",
        help="file of documents, one per line (blank lines skipped), or JSONL with a 'text' field; "
        "'-' or nothing reads stdin",
    )
    rank.add_argument(
        "--format",
        choices=("auto", "lines", "jsonl"),
        default="auto",
        help="how DOCUMENTS is written; auto means jsonl for a .jsonl file, else lines",
    )
    rank.add_argument("--top-n", type=int, metavar="N", help="print only the N best (default: all)")
    rank.add_argument("--score-threshold", type=float, metavar="S", help="print only scores >= S")
    rank.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    rank.set_defaults(handler=run_rank)


def read_documents(text: str, *, name: str, fmt: str) -> tuple[list[str], int]:
    """Documents from `text` in `fmt` (`"lines"` or `"jsonl"`), and the number of blank lines skipped.

    Lines end at `"\\n"` only, with a trailing `"\\r"` dropped (see
    [`split_lines`][qwen_rerank.tools.demo.split_lines]): a form feed or U+2028 stays
    inside its document.

    Raises:
        DataFormatError: A JSONL line is not an object with a string `text`.
    """
    documents: list[str] = []
    blank = 0
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            blank += 1
        elif fmt == "lines":
            documents.append(line)
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(name, number, f"not valid JSON ({exc.msg}).") from exc
            value = record.get("text") if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise DataFormatError(name, number, "expected a JSON object with a string 'text' field.")
            documents.append(value)
    return documents, blank


def run_rank(args: argparse.Namespace) -> int:
    """Run `qwen-rerank rank` with parsed `args`; return the exit status."""
    check_backend_options(args)
    name = "<stdin>" if args.documents == "-" else args.documents
    fmt = args.format
    if fmt == "auto":
        fmt = "jsonl" if name.endswith((".jsonl", ".ndjson")) else "lines"
    try:
        check_query(args.query, name="--query")
        top_n = check_top_n(args.top_n, name="--top-n", unset="unset")
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from exc
    documents, blank = read_documents(_read_source(args.documents, name), name=name, fmt=fmt)
    if blank:
        note(f"skipped {count(blank, 'blank line')} in {name}")
    if not documents:
        raise DataFormatError(name, None, "no documents to rank (expected one per line).")
    with build_reranker(args) as reranker:
        results = reranker.rerank(args.query, documents, top_n=top_n, score_threshold=args.score_threshold)
    cut = sum(r.truncated for r in results)
    if cut:
        note(
            f"{count(cut, 'document')} of those shown lost {'its' if cut == 1 else 'their'} end to "
            "--max-length; --long-documents chunk scores them window by window"
        )
    if args.json:
        print_json({"query": args.query, "results": [_result_dict(rank, r) for rank, r in _ranked(results)]})
    else:
        print(_format_ranking(results))
    return 0


def _read_source(source: str, name: str) -> str:
    try:
        if source == "-":
            if sys.stdin is None or sys.stdin.isatty():
                raise UsageError("give a DOCUMENTS file, or pipe documents on stdin, one per line.")
            data = sys.stdin.buffer.read()
        else:
            data = Path(source).read_bytes()
    except FileNotFoundError as exc:
        raise DataFormatError(name, None, "no such file.") from exc
    except OSError as exc:
        raise DataFormatError(name, None, f"cannot read the file ({exc.strerror or exc}).") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(name, line, "not UTF-8 text.") from exc


def _ranked(results: Sequence[RerankResult]) -> list[tuple[int, RerankResult]]:
    return list(enumerate(results, start=1))


def _result_dict(rank: int, result: RerankResult) -> dict[str, Any]:
    return {
        "rank": rank,
        "index": result.index,
        "score": result.score,
        "document": result.document,
        "truncated": result.truncated,
        "span": None if result.span is None else list(result.span),
    }


def _format_ranking(results: Sequence[RerankResult]) -> str:
    lines = [f"{'rank':>4}  {'index':>5}  {'score':>6}  document"]
    for rank, result in _ranked(results):
        lines.append(
            f"{rank:>4}  {result.index:>5}  {result.score:.4f}  {_preview(describe(result.document))}"
        )
    return "\n".join(lines)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return terminal_text(flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…")
