"""Helpers that several test files share: paths, the tiny dataset read independently, local ports,
sync/async calls, score comparison, skipping what a machine lacks, and the stub backends that record
how they were called. (Shared fixtures, such as ``mode``, live in tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from qwen_rerank._requests import Progress, Request
from qwen_rerank.base import Reranker
from qwen_rerank.tools.evaluation import METRICS

if TYPE_CHECKING:
    from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
# Where the browser tests save screenshots for a person to look at (gitignored).
SCREENSHOTS = Path(os.environ.get("QWEN_RERANK_SCREENSHOTS", ROOT / "build" / "screenshots"))
HUB_ID = "Qwen/Qwen3-Reranker-0.6B"
CHROMIUM = Path(os.environ.get("QWEN_RERANK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


BROWSER_TESTS = "the browser tests (.ci/run installs chromium and playwright)"


def skip_or_fail(reason: str, ci_runs: str) -> NoReturn:
    """Skip a test whose server, browser or tool this machine lacks, or fail it where ``CI`` is set.

    ``ci_runs`` names the tests CI must run and how CI provides what they need, e.g. `BROWSER_TESTS`.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run {ci_runs}.")
    pytest.skip(reason)


def call(reranker: Reranker, mode: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``reranker.method(...)``, or ``asyncio.run(reranker.amethod(...))`` in async mode."""
    if mode == "sync":
        return getattr(reranker, method)(*args, **kwargs)
    return asyncio.run(getattr(reranker, "a" + method)(*args, **kwargs))


def max_diff(a: list[float], b: list[float]) -> float:
    """The largest absolute difference between two score lists of the same length (0 when empty)."""
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def close_to(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    """Whether two score lists have the same length and differ by at most ``tol`` everywhere."""
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@contextlib.contextmanager
def launched_chromium() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail('playwright is not installed (pip install "qwen-rerank[dev]")', BROWSER_TESTS)
    if not CHROMIUM.is_file():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", BROWSER_TESTS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def make_hub_cache(model_path: Path, cache: Path) -> Path:
    """A Hugging Face hub cache in ``cache`` in which ``model_path`` is stored as `HUB_ID`."""
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return cache


TINY_BEIR = ROOT / "examples" / "data" / "tiny_beir"
TINY_RUN = TINY_BEIR / "first_stage.trec"


def hand_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """The five measures from their definitions (trec_eval's: linear gains, log2 discounts), averaged."""
    totals = dict.fromkeys(METRICS, 0.0)
    for query_id, judged in qrels.items():
        ranking = list(rankings.get(query_id, []))
        relevant = {doc for doc, rel in judged.items() if rel > 0}
        gains = [judged.get(doc, 0) for doc in ranking]
        dcg = sum(max(g, 0) / math.log2(i + 2) for i, g in enumerate(gains[:10]))
        ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        hits = [i for i, doc in enumerate(ranking[:10]) if doc in relevant]
        precisions = [(n + 1) / (i + 1) for n, i in enumerate(hits)]
        totals["ndcg_at_10"] += dcg / idcg if idcg else 0.0
        totals["map_at_10"] += sum(precisions) / len(relevant) if relevant else 0.0
        totals["mrr_at_10"] += 1 / (hits[0] + 1) if hits else 0.0
        totals["recall_at_10"] += len(hits) / len(relevant) if relevant else 0.0
        totals["recall_at_100"] += len(relevant & set(ranking[:100])) / len(relevant) if relevant else 0.0
    return {name: value / len(qrels) for name, value in totals.items()}


def parse_trec(path: Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run as written, read independently of the module under test."""
    run: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, []).append((doc, float(score)))
    return run


def first_stage_top_k(k: int) -> dict[str, list[str]]:
    """The shipped run's top k per query by score (the file has no ties)."""
    return {
        q: [d for d, _ in sorted(docs, key=lambda e: -e[1])[:k]] for q, docs in parse_trec(TINY_RUN).items()
    }


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc, rel = line.split("\t")
        qrels.setdefault(qid, {})[doc] = int(rel)
    return qrels


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def connect(url: str) -> Client:
    """A gradio_client Client for the demo at ``url`` (imported here: only demo tests need gradio)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def expected_rows(results: list[Any]) -> list[list[Any]]:
    return [[rank, r.index, pytest.approx(r.score, abs=1e-6)] for rank, r in enumerate(results, start=1)]


class FileServer:
    """A loopback HTTP server that serves one file's bytes at ``url`` and records every request's path."""

    def __init__(self, body: bytes, content_type: str, url_path: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{url_path}"


@contextlib.contextmanager
def served_file(body: bytes, content_type: str, url_path: str) -> Iterator[FileServer]:
    """A `FileServer` serving while the block runs, shut down after it."""
    server = FileServer(body, content_type, url_path)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


# -- stub backends -----------------------------------------------------------------------------------


def one_at_a_time(
    requests: list[Request], progress: Progress | None, score: Callable[[str, list[str]], list[float]]
) -> list[list[float]]:
    """Each request's ``score(query, documents)`` in turn, told to ``progress`` (if any) as it finishes."""
    out = []
    for query, documents in requests:
        out.append(score(query, documents))
        if progress is not None:
            progress(1, len(documents))
    return out


class Recorder(Reranker):
    """The given backend, recording each request's query, documents and instruction."""

    def __init__(self, inner: Reranker) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, list[str], str]] = []

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        def score(query: str, documents: list[str]) -> list[float]:
            self.calls.append((query, list(documents), instruction))
            return self.inner.score(query, documents, instruction=instruction)

        return one_at_a_time(requests, progress, score)

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        return self._score_batch(requests, instruction, progress)


class ThreadRecorder(Reranker):
    """The given backend, recording whether each request was scored sync or async, and on which thread."""

    def __init__(self, inner: Reranker) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, int]] = []

    def _recorded(self, kind: str, instruction: str) -> Callable[[str, list[str]], list[float]]:
        def score(query: str, documents: list[str]) -> list[float]:
            self.calls.append((kind, threading.get_ident()))
            return self.inner.score(query, documents, instruction=instruction)

        return score

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        return one_at_a_time(requests, progress, self._recorded("sync", instruction))

    async def _ascore_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        return one_at_a_time(requests, progress, self._recorded("async", instruction))


class LengthReranker(Reranker):
    """A backend with only ``_score_batch``: scores by document length (a real, if silly, scorer).

    ``calls`` records the query of each request it scores.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        def score(query: str, documents: list[str]) -> list[float]:
            self.calls.append(query)
            return [min(1.0, len(doc) / 100) for doc in documents]

        return one_at_a_time(requests, progress, score)


@contextlib.contextmanager
def demo_served_by_cli(argv: list[str]) -> Iterator[tuple[str, list[int]]]:
    """`qwen-rerank ARGV --port PORT` serving the demo in a thread: yields its URL and exit statuses.

    The page is closed on exit, and the statuses then hold the command's exit status.
    """
    import gradio

    from qwen_rerank.cli import main

    port = free_port()
    statuses: list[int] = []
    server = threading.Thread(target=lambda: statuses.append(main([*argv, "--port", str(port)])), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not any(app.is_running and app.server_port == port for app in gradio.Blocks.get_instances()):
            assert server.is_alive(), f"qwen-rerank demo exited with {statuses}"
            assert time.monotonic() < deadline, "qwen-rerank demo did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", statuses
    finally:
        for app in gradio.Blocks.get_instances():
            if app.server_port == port:
                app.close()
        server.join(timeout=30)
