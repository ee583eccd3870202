"""``qwen-rerank calibrate``: the score threshold for a target precision or recall, on your own data.

```text
qwen-rerank calibrate DATASET_DIR --run RUN_FILE [--target-precision P | --target-recall R]
                      [--top-k 100] [--split test] [--rows 10] [--plot FILE.png] [--json]
```

It reads the data as ``eval`` does, scores each judged query's first-stage
top-k through ``score_many``, and prints a table of thresholds against
precision, recall and the share of queries left with no document, a terminal
chart, and the threshold that meets the target (exit status 1 when none
does). A threshold holds for one model, instruction and corpus.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.cli._common import (
    UsageError,
    add_backend_options,
    build_reranker,
    check_backend_options,
    note,
    print_json,
)
from qwen_rerank.tools.evaluation import DEFAULT_BATCH_QUERIES, DataFormatError

__all__ = ["add_calibrate_command", "run_calibrate_command"]


def add_calibrate_command(commands: Any) -> None:
    """Add ``calibrate`` to the ``qwen-rerank`` subcommands (an argparse subparsers object)."""
    calibrate = commands.add_parser(
        "calibrate",
        help="find the score threshold for a target precision or recall on labelled data",
        description="Score a first-stage run on a BEIR-layout dataset (as 'eval' reads it) and print, "
        "for each score threshold, the precision and recall of what it keeps and the share of queries "
        "it leaves with no document; then the threshold for --target-precision or --target-recall. "
        "A threshold holds for one model, instruction and corpus: calibrate again when one changes.",
    )
    add_backend_options(calibrate)
    calibrate.add_argument(
        "dataset", metavar="DATASET_DIR", help="folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv"
    )
    calibrate.add_argument(
        "--run", metavar="RUN_FILE", required=True, help="first-stage run, TREC format (as for eval)"
    )
    target = calibrate.add_mutually_exclusive_group()
    target.add_argument(
        "--target-precision",
        type=float,
        metavar="P",
        help="the threshold of highest recall with precision >= P",
    )
    target.add_argument(
        "--target-recall", type=float, metavar="R", help="the highest threshold with recall >= R"
    )
    calibrate.add_argument(
        "--top-k", type=int, default=100, metavar="K", help="candidates per query (default 100)"
    )
    calibrate.add_argument("--split", default="test", help="qrels split (default test)")
    calibrate.add_argument("--rows", type=int, default=10, metavar="N", help="table rows (default 10)")
    calibrate.add_argument("--plot", metavar="FILE", help="also draw the curves into a PNG (needs Pillow)")
    calibrate.add_argument(
        "--batch-queries",
        type=int,
        default=DEFAULT_BATCH_QUERIES,
        metavar="N",
        help=f"queries scored together (default {DEFAULT_BATCH_QUERIES}); the results do not depend on it",
    )
    calibrate.add_argument("--json", action="store_true", help="print one JSON object instead")
    calibrate.set_defaults(handler=run_calibrate_command)


def run_calibrate_command(args: argparse.Namespace) -> int:
    """Run ``calibrate`` with parsed ``args``; the exit status."""
    from qwen_rerank.tools.calibration import calibrate, format_chart, format_cuts, write_png
    from qwen_rerank.tools.evaluation import load_dataset, load_run

    check_backend_options(args)
    _check(args)
    if args.plot is not None:  # before minutes of scoring, not after
        require("PIL.Image", "plot")
        _check_plot_path(args.plot)
    dataset = load_dataset(args.dataset, args.split)  # bad data fails before a model loads
    run = load_run(args.run, queries=dataset.queries, corpus=dataset.corpus)
    with build_reranker(args) as reranker:
        calibration = calibrate(
            reranker, dataset, run, top_k=args.top_k, batch_queries=args.batch_queries, progress=True
        )
    chosen, goal = None, None
    if args.target_precision is not None:
        chosen, goal = (
            calibration.for_precision(args.target_precision),
            f"precision >= {args.target_precision}",
        )
    elif args.target_recall is not None:
        chosen, goal = calibration.for_recall(args.target_recall), f"recall >= {args.target_recall}"
    if args.json:
        report = {**calibration.as_dict(), "target": goal, "chosen": chosen.as_dict() if chosen else None}
        print_json(report)
    else:
        print(format_cuts(calibration.rows(args.rows), chosen))
        print()
        print(format_chart(calibration, chosen))
        if chosen is not None:
            print(
                f"\nscore_threshold={chosen.threshold!r} for {goal}: precision {chosen.precision:.3f}, "
                f"recall {chosen.recall:.3f}, {chosen.empty_share:.1%} of queries left with no document "
                f"({calibration.queries} queries). It holds for this model, instruction and corpus only."
            )
    if args.plot is not None:  # after the results: a chart that fails to write loses none of them
        sys.stdout.flush()
        try:
            write_png(calibration, args.plot, chosen)
        except OSError as exc:
            raise DataFormatError(
                args.plot, None, f"cannot write the chart ({exc.strerror or exc})."
            ) from exc
        note(f"wrote {args.plot}")
    if goal is not None and chosen is None:
        print(f"qwen-rerank: no threshold reaches {goal} on this data.", file=sys.stderr)
        return 1
    return 0


def _check_plot_path(plot: str) -> None:
    """Refuse a ``--plot`` path that cannot be written: a folder, or in a missing or read-only folder."""
    path = Path(plot)
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"--plot {plot} is a folder; give a file name such as {path / 'calibration.png'}.")
    if not folder.is_dir():
        raise UsageError(f"--plot {plot}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--plot {plot} cannot be written (permission denied).")


def _check(args: argparse.Namespace) -> None:
    for name in ("target_precision", "target_recall"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be between 0 and 1, got {value}.")
    for name, least in (("top_k", 1), ("rows", 2), ("batch_queries", 1)):
        value = getattr(args, name)
        if value < least:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be an integer of at least {least}, got {value}.")
