"""The ``qwen-rerank`` command: rank documents, evaluate on a BEIR dataset, launch the demo.

::

    qwen-rerank rank --query "What is the capital of China?" docs.txt [--top-n 3] [--json]
    qwen-rerank eval DATASET_DIR --run RUN_FILE [--top-k 100] [--split test] [--output DIR] [--json]
                     [--batch-queries 64] [--concurrency 8]
    qwen-rerank demo [--host 127.0.0.1] [--port 7860] [--allow-backend CHOICE ...]
    qwen-rerank check --base-url URL [--model NAME] [--template client|server] [--api vllm] [--json]
    qwen-rerank calibrate DATASET_DIR --run RUN_FILE [--target-precision P | --target-recall R] [--plot FILE]
    qwen-rerank --version

Every command takes the backend options: ``--model PATH_OR_ID`` for a local
checkpoint (default Qwen/Qwen3-Reranker-0.6B), or ``--base-url URL`` for a vLLM
server, plus ``--instruction`` and ``--max-length``. ``--device`` and ``--dtype``
apply to the local backend only; ``--template`` and ``--tokenizer`` to vLLM only,
whose API key is read from ``QWEN_RERANK_API_KEY``. Results go to stdout,
progress and notes to stderr. Document files are split into lines at ``\\n``
only (a trailing ``\\r`` is dropped), as ``wc -l`` counts them. An error is one line on stderr and a non-zero
exit: 2 for a usage error, 1 for anything else (a missing model, bad data, an
unreachable server).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.base import Reranker
from qwen_rerank.demo import split_lines
from qwen_rerank.evaluation import DEFAULT_BATCH_QUERIES, DataFormatError
from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.factory import create_reranker
from qwen_rerank.prompt import DEFAULT_MODEL
from qwen_rerank.remote import API_KEY_ENV
from qwen_rerank.results import RerankResult

__all__ = ["build_parser", "main", "read_documents"]

PROG = "qwen-rerank"
_PREVIEW_CHARS = 100


class UsageError(Exception):
    """The command line asks for something that cannot work; exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_backend_options(args)
        status: int = args.handler(args)
        return status
    except UsageError as exc:
        return _fail(exc, 2)
    except QwenRerankError as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qwen-rerank`` and its three commands."""
    backend = argparse.ArgumentParser(add_help=False)
    group = backend.add_argument_group("backend")
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
    group.add_argument(
        "--template",
        choices=("client", "server"),
        help="vLLM: 'client' (default) if the server runs without --chat-template, 'server' if it "
        f"runs with qwen3_reranker.jinja. The API key is read from ${API_KEY_ENV}.",
    )
    group.add_argument(
        "--tokenizer",
        metavar="PATH_OR_ID",
        help="vLLM with --template client: tokenizer used to cut long documents to --max-length",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank documents with Qwen3-Reranker, locally or through vLLM.",
        epilog="Run 'qwen-rerank COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rank = commands.add_parser(
        "rank",
        parents=[backend],
        help="rank documents for a query",
        description="Rank documents for a query and print them best first, with scores.",
    )
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
    rank.add_argument("--top-n", type=int, metavar="N", help="print only the N best")
    rank.add_argument("--score-threshold", type=float, metavar="S", help="print only scores >= S")
    rank.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    rank.set_defaults(handler=_run_rank)

    evaluate = commands.add_parser(
        "eval",
        parents=[backend],
        help="measure nDCG@10 etc. before and after reranking a first-stage run",
        description="Rerank a first-stage run on a BEIR-layout dataset and report, side by side, "
        "ndcg_at_10, map_at_10, mrr_at_10, recall_at_10 and recall_at_100 for the first stage "
        "and the reranked run (pytrec_eval, as MTEB computes them).",
    )
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
    evaluate.set_defaults(handler=_run_eval)

    demo = commands.add_parser(
        "demo",
        parents=[backend],
        help="launch the Gradio demo",
        description="Launch a Gradio page to rerank your own documents (pip install 'qwen-rerank[demo]').",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    demo.add_argument(
        "--allow-backend",
        metavar="CHOICE",
        action="append",
        default=[],
        help="another backend page users may pick from a dropdown: a local model path or hub id, or a "
        "vLLM URL (commas separate replicas); repeatable. By default the page serves only the backend "
        "given by --model or --base-url",
    )
    demo.set_defaults(handler=_run_demo)

    from qwen_rerank.cli.check import add_check_command  # imports the remote backend only

    add_check_command(commands)
    from qwen_rerank.cli.calibrate import add_calibrate_command

    add_calibrate_command(commands, parents=[backend])
    return parser


def read_documents(text: str, *, name: str, fmt: str) -> tuple[list[str], int]:
    """Documents from ``text`` in ``fmt`` ("lines" or "jsonl"), and the number of blank lines skipped.

    Lines end at ``"\\n"`` only, with a trailing ``"\\r"`` dropped (see
    :func:`~qwen_rerank.demo.split_lines`): a form feed or U+2028 stays inside
    its document.

    Raises:
        DataFormatError: a JSONL line is not an object with a string ``text``.
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


def _run_rank(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.documents == "-" else args.documents
    fmt = args.format
    if fmt == "auto":
        fmt = "jsonl" if name.endswith((".jsonl", ".ndjson")) else "lines"
    if args.top_n is not None and args.top_n < 1:
        raise UsageError(f"--top-n must be a positive integer (leave it out to print all), got {args.top_n}.")
    documents, blank = read_documents(_read_source(args.documents, name), name=name, fmt=fmt)
    if blank:
        _note(f"skipped {_count(blank, 'blank line')} in {name}")
    if not documents:
        raise DataFormatError(name, None, "no documents to rank (expected one per line).")
    with _build_reranker(args) as reranker:
        results = reranker.rerank(
            args.query, documents, top_n=args.top_n, score_threshold=args.score_threshold
        )
    cut = sum(r.truncated for r in results)
    if cut:
        _note(
            f"{_count(cut, 'document')} of those shown lost {'its' if cut == 1 else 'their'} end to "
            "--max-length; --long-documents chunk scores them window by window"
        )
    if args.json:
        _print_json({"query": args.query, "results": [_result_dict(rank, r) for rank, r in _ranked(results)]})
    else:
        print(_format_ranking(results))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from qwen_rerank.evaluation import evaluate, format_table, load_dataset, load_run, write_trec

    if args.top_k < 1:
        raise UsageError(f"--top-k must be a positive integer, got {args.top_k}.")
    if args.batch_queries < 1:
        raise UsageError(f"--batch-queries must be a positive integer, got {args.batch_queries}.")
    if args.concurrency is not None and not args.base_url:
        raise UsageError("--concurrency only applies to a vLLM server: add --base-url URL, or drop it.")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency must be a positive integer, got {args.concurrency}.")
    require("pytrec_eval", "eval")
    require("tqdm", "eval")
    # Check the data before loading a model: bad data should fail in a second, not a minute.
    dataset = load_dataset(args.dataset, args.split)
    run = load_run(args.run, queries=dataset.queries, corpus=dataset.corpus)
    concurrency = {} if args.concurrency is None else {"max_concurrency": args.concurrency}
    with _build_reranker(args, **concurrency) as reranker:
        report = evaluate(
            reranker,
            dataset,
            run,
            top_k=args.top_k,
            progress=True,
            on_note=_note,
            batch_queries=args.batch_queries,
        )
    if args.output is not None:
        out = Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
            write_trec(out / "reranked.trec", report.reranked_run)
        except OSError as exc:
            raise DataFormatError(out, None, f"cannot write the results ({exc.strerror or exc}).") from exc
        _note(f"wrote {out / 'metrics.json'} and {out / 'reranked.trec'}")
    if args.json:
        _print_json(report.as_dict())
    else:
        print(format_table(report))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from qwen_rerank.demo import build_demo, launch_demo

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}.")
    require("gradio", "demo")
    _check_port_free(args.host, args.port)
    reranker = _build_reranker(args)  # load now, so a bad model fails here and not in the page
    backend = ", ".join(args.base_url) if args.base_url else (args.model or DEFAULT_MODEL)
    app = build_demo(
        backend,
        allowed_backends=args.allow_backend,
        reranker=reranker,
        instruction=args.instruction,
        local_options=_local_options(args),
        remote_options={**_remote_options(args), "model": args.model} if args.base_url else None,
    )
    try:
        launch_demo(app, host=args.host, port=args.port)
    except OSError as exc:
        raise UsageError(_port_message(args.host, args.port)) from exc
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Fail in a second, before a model loads, when ``host:port`` cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as exc:
        raise UsageError(_port_message(host, port)) from exc


def _port_message(host: str, port: int) -> str:
    return f"cannot listen on {host}:{port}: the port is in use or not allowed. Pick another with --port N."


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qwen-rerank")
    except PackageNotFoundError:
        return "unknown"


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


_LOCAL_ONLY = ("device", "dtype", "compile")
_REMOTE_ONLY = ("template", "tokenizer")


def _check_backend_options(args: argparse.Namespace) -> None:
    wrong_side = _LOCAL_ONLY if args.base_url else _REMOTE_ONLY
    misplaced = ["--" + name for name in wrong_side if getattr(args, name) is not None]
    if misplaced and args.base_url:
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


def _build_reranker(args: argparse.Namespace, **remote_extra: Any) -> Reranker:
    if args.base_url:
        urls: list[str] = args.base_url
        base_url = urls[0] if len(urls) == 1 else urls
        return create_reranker(
            args.model,
            base_url=base_url,
            instruction=args.instruction,
            **_remote_options(args),
            **remote_extra,
        )
    return create_reranker(args.model, instruction=args.instruction, **_local_options(args))


def _local_options(args: argparse.Namespace) -> dict[str, Any]:
    return _given(args, (*_LOCAL_ONLY, "max_length", "long_documents"))


def _remote_options(args: argparse.Namespace) -> dict[str, Any]:
    return _given(args, (*_REMOTE_ONLY, "max_length", "long_documents"))


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {name: value for name in names if (value := getattr(args, name)) is not None}


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
        lines.append(f"{rank:>4}  {result.index:>5}  {result.score:.4f}  {_preview(result.document)}")
    return "\n".join(lines)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _fail(exc: BaseException, status: int) -> int:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
