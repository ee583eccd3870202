"""`qwen-rerank demo`: serve the Gradio page that reranks your own documents."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.cli._common import (
    UsageError,
    add_backend_options,
    backend_label,
    backend_options,
    build_reranker,
    check_backend_options,
    is_remote,
)

__all__ = ["TINY_NOTE", "add_demo_command", "run_demo"]

TINY_NOTE = (
    "**This page scores with the tiny random test model** (`--tiny`): its weights are random, so "
    "its scores and rankings mean nothing. Serve a real checkpoint with `--model` (e.g. "
    "`Qwen/Qwen3-Reranker-0.6B`) for real rankings."
)


def add_demo_command(commands: Any) -> None:
    """Add `demo` to the `qwen-rerank` subcommands (an argparse subparsers object)."""
    demo = commands.add_parser(
        "demo",
        help="launch the Gradio demo",
        description="Launch a Gradio page to rerank your own documents (pip install 'qwen-rerank[demo]').",
    )
    add_backend_options(demo)
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    demo.add_argument(
        "--allow-backend",
        metavar="CHOICE",
        action="append",
        default=[],
        help="another backend page users may pick from a dropdown: a local model path or hub id, or a "
        "vLLM URL (commas separate replicas); repeatable. By default the page serves only the backend "
        "given by --model, --base-url or --tiny",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run `qwen-rerank demo` with parsed `args`: serve until interrupted; return the exit status."""
    from qwen_rerank.tools.demo import build_demo, launch_demo

    check_backend_options(args)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}.")
    require("gradio", "demo")
    _check_port_free(args.host, args.port)
    reranker = build_reranker(args)  # load now, so a bad model fails here and not in the page
    local, remote = backend_options(args)
    app = build_demo(
        backend_label(args),
        allowed_backends=args.allow_backend,
        reranker=reranker,
        instruction=args.instruction,
        local_options=local,
        remote_options={**remote, "model": args.model} if is_remote(args) else None,
        note=TINY_NOTE if args.tiny else None,
    )
    try:
        launch_demo(app, host=args.host, port=args.port)
    except OSError as exc:
        raise UsageError(_port_message(args.host, args.port)) from exc
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Fail in a second, before a model loads, when `host:port` cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(_port_message(host, port)) from exc


def _port_message(host: str, port: int) -> str:
    return f"cannot listen on {host}:{port}: the port is in use or not allowed. Pick another with --port N."
