"""What every `qwen-rerank` command shares: the backend options, building the backend, and printing.

Everything printed goes through [`terminal_text`][qwen_rerank.cli._common.terminal_text]
(or [`print_json`][qwen_rerank.cli._common.print_json], which escapes the same way), so
that text a server sent can never move the cursor, clear a line or forge a line of output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import create_reranker, options_for
from qwen_rerank.prompt import DEFAULT_MODEL
from qwen_rerank.remote import API_KEY_ENV, API_NAMES, DIALECTS, HOSTED_API_NAMES

__all__ = [
    "APIS",
    "PROG",
    "UsageError",
    "add_backend_options",
    "backend_label",
    "backend_options",
    "build_reranker",
    "check_backend_options",
    "check_model_given",
    "count",
    "fail",
    "note",
    "print_json",
    "terminal_text",
    "tiny_model",
]

PROG = "qwen-rerank"
APIS = API_NAMES
"""The `--api` choices: the wire formats the remote backend speaks."""


class UsageError(InvalidInputError):
    """The `qwen-rerank` command line asks for something that cannot work; exit status 2."""


# C0 and C1 controls (ESC, CSI, BEL, CR, LF, ...), DEL, bidirectional overrides and the
# Unicode line and paragraph separators: all can move the cursor or reorder or split a line.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """`text` with every control character written as a `\\uXXXX` escape, safe to print.

    The escape is also valid JSON inside a string, so the same function serves
    the tables, the error lines and [`print_json`][qwen_rerank.cli._common.print_json].
    """
    return _CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def one_line(text: str) -> str:
    """`text` with its runs of whitespace (newlines too) made one space, then escaped."""
    return terminal_text(" ".join(text.split()))


def print_json(value: Any) -> None:
    """Print `value` as one line of JSON, with no raw control character in it."""
    print(terminal_text(json.dumps(value, ensure_ascii=False)))


def note(message: str) -> None:
    """A note on stderr, prefixed with the program name."""
    print(f"{PROG}: {one_line(message)}", file=sys.stderr, flush=True)


def fail(exc: BaseException, status: int) -> int:
    """Print `exc` as one error line on stderr; return `status`."""
    print(f"{PROG}: error: {one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
    return status


def count(n: int, noun: str) -> str:
    """`n` and `noun`, in the plural unless `n` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and tune the backend, shared by `rank`, `eval` and `demo`."""
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--model",
        metavar="PATH_OR_ID",
        help=f"local checkpoint folder or hub id (default {DEFAULT_MODEL}); with --base-url, "
        "the model name to ask the server for",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        action="append",
        help="vLLM server to score with instead of a local model; repeat for replicas",
    )
    group.add_argument(
        "--tiny",
        action="store_true",
        help="score with the tiny random test model, built once into the user cache: offline, "
        "meaningless scores (pip install 'qwen-rerank[testing]')",
    )
    group.add_argument("--instruction", help="task instruction (default: the model card's web-search one)")
    group.add_argument(
        "--max-length", type=int, metavar="TOKENS", help="most tokens per prompt; longer documents are cut"
    )
    group.add_argument(
        "--long-documents",
        choices=("truncate", "chunk"),
        help="a document longer than --max-length: 'truncate' (default) cuts its tail, 'chunk' scores "
        "overlapping windows and keeps the best (vLLM: needs --tokenizer)",
    )
    _add_local_options(group)
    _add_remote_options(group)


def _add_local_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--device", help="local backend: cpu, cuda, cuda:N or mps (default: the best available)"
    )
    group.add_argument("--dtype", help="local backend: float32, bfloat16 or float16 (default: by device)")
    group.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="local backend: run the model through torch.compile (faster after a first call that "
        "compiles for a minute or more; kernels are cached on disk)",
    )


def _add_remote_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--template",
        choices=("client", "server"),
        help="vLLM: 'client' (default) if the server runs without --chat-template, 'server' if it "
        "runs with a --chat-template (qwen_rerank.prompt.server_template_path()). "
        f"The API key is read from ${API_KEY_ENV}.",
    )
    group.add_argument(
        "--tokenizer",
        metavar="PATH_OR_ID",
        help="vLLM with --template client: tokenizer used to cut long documents to --max-length",
    )
    group.add_argument(
        "--api",
        choices=APIS,
        help="the server's wire format (default vllm), or a hosted API (dashscope, siliconflow, "
        "deepinfra: no --base-url needed, the key from its variable, e.g. DASHSCOPE_API_KEY)",
    )


# The backend settings the command line takes; which backend takes each is qwen_rerank.factory's to say.
_BACKEND_OPTIONS = (
    "device",
    "dtype",
    "compile",
    "template",
    "tokenizer",
    "api",
    "max_length",
    "long_documents",
)


def backend_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backend settings given on the command line: those for a local backend, those for a remote one."""
    given = {name: value for name in _BACKEND_OPTIONS if (value := getattr(args, name, None)) is not None}
    return options_for("local", given), options_for("remote", given)


def check_backend_options(args: argparse.Namespace) -> None:
    """Refuse, with the fix, options that the chosen backend would ignore or cannot take.

    Raises:
        UsageError: An option belongs to the other kind of backend, or `--tiny`
            is given with `--model` or `--base-url`, or `--max-length` is not positive.
    """
    if getattr(args, "tiny", False) and (args.base_url or args.model is not None):
        given = "--base-url" if args.base_url else "--model"
        raise UsageError(f"--tiny chooses the model itself; drop {given}, or drop --tiny.")
    local, remote = backend_options(args)
    chosen = remote if is_remote(args) else local
    misplaced = ["--" + name.replace("_", "-") for name in {**local, **remote} if name not in chosen]
    if misplaced and is_remote(args):
        raise UsageError(
            f"{' and '.join(misplaced)} only apply to a local model; with --base-url the server decides. "
            "Drop them, or drop --base-url to run the model here."
        )
    if misplaced:
        raise UsageError(
            f"{' and '.join(misplaced)} only apply to a vLLM server: add --base-url URL, or drop them."
        )
    if args.max_length is not None and args.max_length < 1:
        raise UsageError(f"--max-length must be a positive integer, got {args.max_length}.")
    if args.base_url:
        check_model_given(args.api, args.model)


def check_model_given(api: str | None, model: str | None) -> None:
    """Refuse an `--api` whose servers need a model name when `--model` is not given.

    Raises:
        UsageError: `--api cohere` (say) without `--model`.
    """
    if api in DIALECTS and DIALECTS[api].needs_model and api not in HOSTED_API_NAMES and model is None:
        raise UsageError(f"--api {api} needs --model NAME, the name the server serves the reranker as.")


def is_remote(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a remote backend: a server's URL, or a hosted `--api`."""
    return bool(args.base_url) or getattr(args, "api", None) in HOSTED_API_NAMES


def tiny_model() -> str:
    """The folder of the tiny random test model, built into the user cache on first use."""
    from qwen_rerank.testing import make_tiny_reranker

    return str(make_tiny_reranker())


def local_model(args: argparse.Namespace) -> str | None:
    """The local checkpoint the command line asks for (`None`: the default model)."""
    return tiny_model() if getattr(args, "tiny", False) else args.model


def backend_label(args: argparse.Namespace) -> str:
    """How the backend is named to the user: its URLs, else its model."""
    if args.base_url:
        return ", ".join(args.base_url)
    if is_remote(args):
        return f"api={args.api}"
    return local_model(args) or DEFAULT_MODEL


def build_reranker(args: argparse.Namespace, **remote_extra: Any) -> Reranker:
    """The backend the command line asks for; `remote_extra` goes to a remote one only."""
    local, remote = backend_options(args)
    if is_remote(args):
        urls: Sequence[str] = args.base_url or []
        base_url = None if not urls else urls[0] if len(urls) == 1 else list(urls)
        return create_reranker(
            args.model, base_url=base_url, instruction=args.instruction, **remote, **remote_extra
        )
    return create_reranker(local_model(args), instruction=args.instruction, **local)
