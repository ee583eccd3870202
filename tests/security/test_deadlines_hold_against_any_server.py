"""Deadlines, message sizes and reply sizes hold against raw loopback servers that misbehave byte by byte."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qwen_rerank import RemoteTimeoutError, VLLMReranker
from tests.helpers import call

QUERY = "what is a giant panda?"
DOCS = ["The giant panda is a bear.", "Paris is the capital of France."]
RESULTS = b'{"results": [{"index": 0, "relevance_score": 0.5}, {"index": 1, "relevance_score": 0.25}]}'

Behaviour = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A loopback server that reads a request's head, then acts out ``behaviour`` on the socket."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                self.behaviour(conn, self.stop)
            except OSError:
                pass  # the client hung up: that is what a deadline does

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


def keep_sending(pieces: Iterator[bytes], interval: float = 0.02) -> Behaviour:
    def act(conn: socket.socket, stop: threading.Event) -> None:
        for piece in pieces:
            if stop.is_set():
                return
            conn.sendall(piece)
            time.sleep(interval)

    return act


def forever(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def continue_stream() -> Iterator[bytes]:
    return forever(b"HTTP/1.1 100 Continue\r\n\r\n")


def endless_chunk_header() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    yield b"5;ext="
    yield from forever(b"a")


def trickled_headers() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nX-Slow: "
    yield from forever(b"x")


def withheld_body() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    yield b'{"results": ['
    yield from forever(b" ")


BEHAVIOURS = {
    "100-continue stream": continue_stream,
    "chunk header never ends": endless_chunk_header,
    "headers byte by byte": trickled_headers,
    "body withheld, spaces trickled": withheld_body,
}


@pytest.fixture
def raw_server() -> Iterator[Callable[[Behaviour], RawServer]]:
    made: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        made.append(RawServer(behaviour))
        return made[-1]

    yield start
    for server in made:
        server.close()


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
@pytest.mark.parametrize("method", ["score", "score_many"])
def test_timeout_and_deadline_bound_the_call_whatever_the_server_sends(
    raw_server, mode, name, method
) -> None:  # type: ignore[no-untyped-def]
    server = raw_server(keep_sending(BEHAVIOURS[name]()))
    args: tuple[Any, ...] = (QUERY, DOCS) if method == "score" else ([(QUERY, DOCS)],)
    with VLLMReranker(server.url, timeout=2, deadline=2, max_retries=0) as reranker:
        started = time.monotonic()
        with pytest.raises(RemoteTimeoutError):
            call(reranker, mode, method, *args)
        elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.5, f"{name}: the call took {elapsed:.1f} s against timeout=2, deadline=2"


def answer(seen: list[bytes]) -> Behaviour:
    """Count the request, and answer it with ``RESULTS``."""

    def act(conn: socket.socket, stop: threading.Event) -> None:
        seen.append(b"request")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RESULTS), RESULTS))

    return act


@pytest.mark.parametrize("bypassed", [False, True])
def test_the_environments_proxy_carries_calls_and_cannot_hold_them(
    raw_server, mode, monkeypatch, bypassed
) -> None:  # type: ignore[no-untyped-def]
    """HTTP_PROXY and NO_PROXY apply to sync calls as to async ones; a trickling proxy meets the deadline."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    seen: list[bytes] = []
    server = raw_server(answer(seen))
    proxy = raw_server(keep_sending(withheld_body()))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with VLLMReranker(server.url, timeout=2, deadline=2, max_retries=0) as reranker:
        started = time.monotonic()
        if bypassed:
            assert call(reranker, mode, "score", QUERY, DOCS) == [0.5, 0.25]
        else:
            with pytest.raises(RemoteTimeoutError):
                call(reranker, mode, "score", QUERY, DOCS)
        elapsed = time.monotonic() - started
    assert seen == ([b"request"] if bypassed else [])
    assert elapsed < 2 + 1.5, f"the call took {elapsed:.1f} s against timeout=2, deadline=2"


HAND_CLOSED_LOOPS = textwrap.dedent(
    """
    import asyncio, gc, os, sys
    from qwen_rerank import VLLMReranker

    def open_sockets():
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass  # the listing's own descriptor, closed meanwhile
        return count

    r = VLLMReranker(sys.argv[1])
    before = open_sockets()
    for _ in range(30):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(r.ascore("q", ["a panda", "a city"]))
        loop.close()
    gc.collect()
    print("open sockets after 30 loops:", open_sockets() - before)
    r.close()
    gc.collect()
    print("loops-ok")
    """
)


def test_event_loops_closed_by_hand_leave_nothing_open(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", HAND_CLOSED_LOOPS, fake_vllm.url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0 and "loops-ok" in run.stdout, run.stderr
    assert "open sockets after 30 loops: 0" in run.stdout, run.stdout
    assert "ResourceWarning" not in run.stderr and "unclosed" not in run.stderr, run.stderr
