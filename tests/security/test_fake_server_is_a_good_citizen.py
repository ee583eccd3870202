"""FakeVLLMServer, which users run in their own suites: bounded requests, clear refusals, no hangs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank.testing.fake_vllm import FakeVLLMServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVLLMServer]:
    with FakeVLLMServer(None, max_request_bytes=1 << 20) as fake:
        yield fake


def exchange(server: FakeVLLMServer, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    """Send raw bytes, return all the server answers before it closes (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        started = time.monotonic()
        while time.monotonic() - started < wait:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            answer += piece
            if b"\r\n\r\n" in answer and answer.split(b"\r\n\r\n", 1)[1].rstrip().endswith(b"}"):
                break
    return answer


def post(length: str) -> bytes:
    return f"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_request_over_the_cap_gets_413_unread(server: FakeVLLMServer) -> None:
    started = time.monotonic()
    answer = exchange(server, post(str(200 << 20)))
    assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 3


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " "])
def test_a_bad_content_length_gets_400_at_once(server: FakeVLLMServer, length: str) -> None:
    started = time.monotonic()
    answer = exchange(server, post(length))
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer
    assert time.monotonic() - started < 3


def test_a_request_within_the_cap_is_served(server: FakeVLLMServer) -> None:
    body = b'{"query": "q", "documents": ["a", "b"]}'
    answer = exchange(server, post(str(len(body))), body)
    assert answer.startswith(b"HTTP/1.1 200") and b"relevance_score" in answer


HIDE_TORCH = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("No module named 'torch' (hidden by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.argv = ["fake_vllm", *sys.argv[1:]]
    runpy.run_module("qwen_rerank.testing.fake_vllm", run_name="__main__")
    """
)


def run_without_torch(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", HIDE_TORCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_without_torch_it_says_in_one_line_what_to_do() -> None:
    proc = run_without_torch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--instant" in lines[0] and "qwen-rerank[local]" in lines[0], err


def test_without_torch_instant_mode_serves() -> None:
    proc = run_without_torch("--instant")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        host, port = url.removeprefix("http://").split(":")
        body = b'{"query": "q", "documents": ["a"]}'
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(post(str(len(body))) + body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
