"""``python -m qwen_rerank.testing.fake_vllm``: serve the fake server in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import qwen_rerank.testing.fake_vllm as package
from qwen_rerank.testing.fake_vllm._dialects import APIS
from qwen_rerank.testing.fake_vllm._server import FakeVLLMServer


def _serve(args: argparse.Namespace) -> None:
    if not args.instant and not _has_torch():
        sys.exit(
            "fake_vllm scores with a model through torch, which is not installed: pass --instant to "
            'serve fake scores without it, or pip install "qwen-rerank[local]".'
        )
    model = None if args.instant else (args.model or _tiny_model())
    server = FakeVLLMServer(
        model, template=args.template, api=args.api, max_model_len=args.max_model_len, port=args.port
    )
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._httpd.serve_forever()


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _tiny_model() -> str:
    """The tiny random model, built once per user by `make_tiny_reranker`."""
    import inspect
    import tempfile

    from qwen_rerank.testing import make_tiny_reranker

    if inspect.signature(make_tiny_reranker).parameters["path"].default is inspect.Parameter.empty:
        folder = (
            Path(tempfile.gettempdir()) / f"qwen-rerank-tiny-{os.getuid() if hasattr(os, 'getuid') else 0}"
        )
        if not (folder / "config.json").is_file():
            make_tiny_reranker(folder)
        return str(folder)
    return str(make_tiny_reranker())  # type: ignore[call-arg, unused-ignore]


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    doc = package.__doc__
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--model", help="checkpoint folder to score with (default: the tiny random model)")
    parser.add_argument("--instant", action="store_true", help="answer at once with fake scores")
    parser.add_argument("--template", action="store_true", help="emulate --chat-template qwen3_reranker")
    parser.add_argument("--api", choices=sorted(APIS), default="vllm", help="wire format (default: vllm)")
    parser.add_argument("--max-model-len", type=int, default=40960, help="longest prompt accepted, tokens")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    _serve(_parse_args())
