"""`qwen-rerank eval`: measure a first-stage run before and after reranking, on a BEIR-layout dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.cli._common import (
    UsageError,
    add_backend_options,
    build_reranker,
    check_backend_options,
    is_remote,
    note,
    print_json,
)
from qwen_rerank.tools.evaluation import DEFAULT_BATCH_QUERIES, DataFormatError, EvalReport

__all__ = ["add_eval_command", "run_eval"]


def add_eval_command(commands: Any) -> None:
    """Add `eval` to the `qwen-rerank` subcommands (an argparse subparsers object)."""
    evaluate = commands.add_parser(
        "eval",
        help="measure nDCG@10 etc. before and after reranking a first-stage run",
        description="Rerank a first-stage run on a BEIR-layout dataset and report, side by side, "
        "ndcg_at_10, map_at_10, mrr_at_10, recall_at_10 and recall_at_100 for the first stage "
        "and the reranked run (pytrec_eval, as MTEB computes them).",
    )
    add_backend_options(evaluate)
    evaluate.add_argument(
        "dataset", metavar="DATASET_DIR", help="folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv"
    )
    evaluate.add_argument(
        "--run",
        metavar="RUN_FILE",
        required=True,
        help="first-stage run to rerank (required), TREC format: qid Q0 docid rank score tag, "
        "from BM25 or your vector store",
    )
    evaluate.add_argument(
        "--top-k", type=int, default=100, metavar="K", help="candidates per query (default 100)"
    )
    evaluate.add_argument("--split", default="test", help="qrels split (default test)")
    evaluate.add_argument("--output", metavar="DIR", help="write metrics.json and reranked.trec here")
    evaluate.add_argument(
        "--batch-queries",
        type=int,
        default=DEFAULT_BATCH_QUERIES,
        metavar="N",
        help=f"queries scored together (default {DEFAULT_BATCH_QUERIES}); the results do not depend on it",
    )
    evaluate.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="vLLM: most requests in flight at once, spread over the replicas (default 8)",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run `qwen-rerank eval` with parsed `args`; return the exit status."""
    from qwen_rerank.tools.evaluation import evaluate, format_table, load_dataset, load_run

    check_backend_options(args)
    _check_eval_options(args)
    require("pytrec_eval", "eval")
    require("tqdm", "eval")
    # Check the data before loading a model: bad data should fail in a second, not a minute.
    dataset = load_dataset(args.dataset, args.split)
    run = load_run(args.run, queries=dataset.queries, corpus=dataset.corpus)
    concurrency = {} if args.concurrency is None else {"max_concurrency": args.concurrency}
    with build_reranker(args, **concurrency) as reranker:
        report = evaluate(
            reranker,
            dataset,
            run,
            top_k=args.top_k,
            progress=True,
            on_note=note,
            batch_queries=args.batch_queries,
        )
    if args.output is not None:
        _write_results(Path(args.output), report)
    if args.json:
        print_json(report.as_dict())
    else:
        print(format_table(report))
    return 0


def _check_eval_options(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise UsageError(f"--top-k must be a positive integer, got {args.top_k}.")
    if args.batch_queries < 1:
        raise UsageError(f"--batch-queries must be a positive integer, got {args.batch_queries}.")
    if args.concurrency is not None and not is_remote(args):
        raise UsageError("--concurrency only applies to a vLLM server: add --base-url URL, or drop it.")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency must be a positive integer, got {args.concurrency}.")


def _write_results(out: Path, report: EvalReport) -> None:
    from qwen_rerank.tools.evaluation import write_trec

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
        write_trec(out / "reranked.trec", report.reranked_run)
    except OSError as exc:
        raise DataFormatError(out, None, f"cannot write the results ({exc.strerror or exc}).") from exc
    note(f"wrote {out / 'metrics.json'} and {out / 'reranked.trec'}")
