"""`check`'s own GETs (`/props` and the like) are read under a rerank reply's caps and time limit."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

BOMB_BYTES = 64 * 2**20  # decoded size of the /props gzip bomb
BOMB = gzip.compress(b"\0" * BOMB_BYTES, compresslevel=9)


def rerank_reply(body: dict[str, Any]) -> bytes:
    """A valid vLLM reply: distinct probabilities, longer documents scored higher."""
    documents = body["documents"]
    order = sorted(range(len(documents)), key=lambda i: len(documents[i]))
    rank = {index: position for position, index in enumerate(order)}
    results = [
        {"index": i, "relevance_score": (rank[i] + 1) / (len(documents) + 1)} for i in range(len(documents))
    ]
    return json.dumps({"results": results}).encode()


def serve(on_get: str, stop: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = rerank_reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._head(200, len(data))
            self.wfile.write(data)

        def do_GET(self) -> None:
            if on_get == "bomb":
                self._head(200, len(BOMB), gzip=True)
                self.wfile.write(BOMB)
                return
            self._head(200, 100_000)  # then one byte a tenth of a second, for hours
            for _ in range(100_000):
                if stop.wait(0.1):
                    return
                self.wfile.write(b" ")
                self.wfile.flush()

        def _head(self, status: int, length: int, gzip: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def hostile_get(request: pytest.FixtureRequest) -> Iterator[str]:
    stop = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), serve(request.param, stop))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def check(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    status = main(["check", "--base-url", url, "--max-length", "512", "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    return {c["name"]: c for c in report["checks"]}


@pytest.mark.parametrize("hostile_get", ["bomb"], indirect=True)
def test_a_gzip_bomb_from_props_costs_no_more_than_a_reply_may(
    hostile_get: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tracemalloc.start()
    try:
        report = check(hostile_get, capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["server"]["status"] == "ok" and report["server"]["data"]["llama_server"] is False
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB at peak"  # the bomb inflates to 64 MiB


@pytest.mark.parametrize("hostile_get", ["trickle"], indirect=True)
def test_a_trickling_props_cannot_hold_check_past_its_timeout(
    hostile_get: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    report = check(hostile_get, capsys, "--timeout", "2")
    elapsed = time.monotonic() - started
    assert report["server"]["status"] == "ok" and report["server"]["data"]["llama_server"] is False
    assert elapsed < 8, f"check took {elapsed:.1f} s with --timeout 2"


def keyed_server(expected: str) -> type[BaseHTTPRequestHandler]:
    """vLLM's model card for a request carrying ``expected`` as its Authorization, else 401."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._answer(rerank_reply(json.loads(self.rfile.read(int(self.headers["Content-Length"])))))

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                card = {"id": "Qwen/Qwen3-Reranker-0.6B", "object": "model", "owned_by": "vllm"}
                self._answer(json.dumps({"object": "list", "data": [card]}).encode())
            else:
                self._answer(b'{"detail": "Not Found"}', 404)

        def _answer(self, data: bytes, status: int = 200) -> None:
            if self.headers.get("Authorization") != expected:
                status, data = 401, b'{"error": "Unauthorized"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.mark.parametrize("how", ["api key", "url password"])
def test_the_checks_own_gets_carry_the_credentials_of_its_rerank_calls(
    how: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = (
        "Bearer sk-check-1234" if how == "api key" else "Basic " + base64.b64encode(b"me:pw-5678").decode()
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), keyed_server(expected))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        if how == "api key":
            monkeypatch.setenv("QWEN_RERANK_API_KEY", "sk-check-1234")
            url = f"http://127.0.0.1:{port}"
        else:
            url = f"http://me:pw-5678@127.0.0.1:{port}"
        report = check(url, capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert report["server"]["data"]["name"] == "vllm", report["server"]
    assert "sk-check-1234" not in json.dumps(report) and "pw-5678" not in json.dumps(report)
