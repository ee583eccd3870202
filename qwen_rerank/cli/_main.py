"""The `qwen-rerank` command: rank documents, evaluate on a BEIR dataset, launch the demo, check a server.

```text
qwen-rerank rank --query "What is the capital of China?" docs.txt [--top-n 3] [--json]
qwen-rerank eval DATASET_DIR --run RUN_FILE [--top-k 100] [--split test] [--output DIR] [--json]
                 [--batch-queries 64] [--concurrency 8]
qwen-rerank demo [--host 127.0.0.1] [--port 7860] [--allow-backend CHOICE ...]
qwen-rerank check (--base-url URL | --tiny) [--model NAME] [--template client|server] [--api vllm]
                  [--tokenizer PATH_OR_ID] [--json]
qwen-rerank calibrate DATASET_DIR --run RUN_FILE [--target-precision P | --target-recall R] [--plot FILE]
qwen-rerank --version
```

`rank`, `eval` and `demo` take the backend options: `--model PATH_OR_ID` for a
local checkpoint (default Qwen/Qwen3-Reranker-0.6B), `--base-url URL` for a
server, or `--tiny` for the tiny random test model, plus `--instruction` and
`--max-length`. `--device`, `--dtype` and `--compile` apply to the local
backend only; `--template`, `--tokenizer` and `--api` to a server only, whose
API key is read from `QWEN_RERANK_API_KEY`. Results go to stdout, progress and
notes to stderr, with control characters escaped. Document files are split into
lines at `\\n` only (a trailing `\\r` is dropped), as `wc -l` counts them. An
error is one line on stderr and a non-zero exit: 2 for a usage error, 1 for
anything else (a missing model, bad data, an unreachable server).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qwen_rerank import __version__
from qwen_rerank.cli._common import PROG, UsageError, fail
from qwen_rerank.cli.calibrate import add_calibrate_command
from qwen_rerank.cli.check import add_check_command
from qwen_rerank.cli.demo import add_demo_command
from qwen_rerank.cli.evaluate import add_eval_command
from qwen_rerank.cli.rank import add_rank_command, read_documents
from qwen_rerank.exceptions import QwenRerankError

__all__ = ["build_parser", "main", "read_documents"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: `sys.argv[1:]`); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
        return status
    except UsageError as exc:
        return fail(exc, 2)
    except QwenRerankError as exc:
        return fail(exc, 1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `qwen-rerank` and its commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank documents with Qwen3-Reranker, locally or through vLLM.",
        epilog="Run 'qwen-rerank COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        add_rank_command,
        add_eval_command,
        add_demo_command,
        add_check_command,
        add_calibrate_command,
    ):
        add_command(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
