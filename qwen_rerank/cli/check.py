"""`qwen-rerank check`: the command line of [`qwen_rerank.tools.diagnose`][], which does the checking.

This module parses the arguments, starts the fake server for `--tiny`, and prints the
findings: one line each (and a `fix:` line), or one JSON report with `--json`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from qwen_rerank._secrets import display_url
from qwen_rerank.cli._common import (
    APIS,
    UsageError,
    check_model_given,
    one_line,
    print_json,
    terminal_text,
    tiny_model,
)
from qwen_rerank.remote import DIALECTS, HOSTED_API_NAMES
from qwen_rerank.tools.diagnose import Finding, run_checks

__all__ = ["add_check_command", "run_check_command"]

_MESSAGE_CHARS = 400  # a finding's message, printed as text, is cut to this
_TINY_APIS = ("vllm", "sglang", "cohere")  # the wire formats the fake server speaks


def add_check_command(commands: Any) -> None:
    """Add `check` to the `qwen-rerank` subcommands (an argparse subparsers object)."""
    check = commands.add_parser(
        "check",
        help="check that a server serves Qwen3-Reranker correctly",
        description="Check that a rerank server serves Qwen3-Reranker correctly; exit status 1 on any FAIL.",
    )
    target = check.add_mutually_exclusive_group()
    target.add_argument(
        "--base-url", metavar="URL", help="the server, e.g. http://localhost:8000 (a hosted --api: optional)"
    )
    target.add_argument(
        "--tiny",
        action="store_true",
        help="start the fake server on the tiny random test model and check it: a healthy report, "
        "offline (pip install 'qwen-rerank[testing]'); --api vllm, sglang or cohere",
    )
    check.add_argument("--model", help="model name to ask for (default: the server's; required for cohere)")
    check.add_argument(
        "--template", choices=["client", "server"], help="default: client (server for --api llamacpp)"
    )
    check.add_argument(
        "--api",
        choices=APIS,
        default="vllm",
        help="default vllm; dashscope, siliconflow or deepinfra check a hosted API, with the key from "
        "its variable (DASHSCOPE_API_KEY, SILICONFLOW_API_KEY, DEEPINFRA_API_KEY)",
    )
    check.add_argument(
        "--max-length", type=int, help="prompt tokens to expect (default 8192; a hosted API: its limit)"
    )
    check.add_argument(
        "--tokenizer",
        metavar="PATH_OR_ID",
        help="the model's tokenizer (hub id or folder): cut documents to --max-length, as the client "
        "would with tokenizer=",
    )
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    check.add_argument("--json", action="store_true", help="print one JSON report")
    check.set_defaults(handler=run_check_command)


def run_check_command(args: argparse.Namespace) -> int:
    """Run `qwen-rerank check` with parsed `args`; return 1 if any check failed, else 0."""
    if args.max_length is not None and args.max_length < 1:
        raise UsageError(f"--max-length must be a positive integer, got {args.max_length}.")
    if args.tiny:
        if args.api in HOSTED_API_NAMES:
            raise UsageError("--tiny starts a fake vLLM server; drop --tiny to check a hosted --api.")
        return _check_tiny(args)
    if not args.base_url and args.api not in HOSTED_API_NAMES:
        raise UsageError(
            "give the server to check with --base-url URL, or --tiny to check the fake one (a hosted "
            "--api dashscope, siliconflow or deepinfra needs neither)."
        )
    check_model_given(args.api, args.model)
    return _report(args, args.base_url, args.model)


def _check_tiny(args: argparse.Namespace) -> int:
    if args.api not in _TINY_APIS:
        raise UsageError(
            f"--tiny serves the fake server in the {', '.join(_TINY_APIS)} formats only; check a real "
            f"{args.api} server with --base-url URL --api {args.api}."
        )
    from qwen_rerank.local import quiet_progress_bars
    from qwen_rerank.testing import FakeVLLMServer

    with quiet_progress_bars():  # the fake server loads the tiny model: no bar for that
        fake = FakeVLLMServer(tiny_model(), template=args.template == "server", api=args.api)
    with fake as server:
        model = args.model or (server.served_model_name if args.api == "cohere" else None)
        return _report(args, server.url, model)


def _report(args: argparse.Namespace, base_url: str | None, model: str | None) -> int:
    findings = run_checks(
        base_url,
        model=model,
        template=args.template,
        api=args.api,
        max_length=args.max_length,
        timeout=args.timeout,
        tokenizer=args.tokenizer,
    )
    failed = any(f.status == "FAIL" for f in findings)
    if args.json:
        report = {
            "base_url": display_url(base_url) if base_url else None,
            "api": args.api,
            "template": args.template or DIALECTS[args.api].default_template,
            "ok": not failed,
            "checks": [asdict(f) for f in findings],
        }
        print_json(report)
    else:
        for finding in findings:
            print(format_finding(finding))
    return 1 if failed else 0


def format_finding(finding: Finding) -> str:
    """A finding as text: one line, plus a `fix:` line; whatever a server said is escaped and cut."""
    message = one_line(finding.message)
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    line = f"{finding.status:<5} {terminal_text(finding.name):<16} {message}"
    return line + (f"\n      fix: {one_line(finding.fix)}" if finding.fix else "")
