"""The fake server's HTTP handling: reading bounded requests, routing, recording, writing answers.

The handler asks the server (`Served`) for its settings and to rerank; it knows nothing of
dialects or scoring beyond that.
"""

from __future__ import annotations

import json
import random
import socket
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from qwen_rerank.testing.fake_vllm._dialects import error_body
from qwen_rerank.testing.fake_vllm._faults import Fault, act_out, corrupt


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw bytes when the body is not JSON


class Served(Protocol):
    """What the handler asks of the server (`FakeVLLMServer`)."""

    served_model_name: str
    max_model_len: int
    api_key: str | None
    max_request_bytes: int
    requests: list[RecordedRequest]
    connections: int

    def _count_connection(self) -> None: ...
    def _record(self, request: RecordedRequest) -> None: ...
    def _enter(self, delta: int) -> None: ...
    def _next_fault(self) -> Fault | None: ...
    def rerank(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...
    def utility(self, path: str, body: Any) -> tuple[int, Any] | None: ...
    def shape(self, response: dict[str, Any], body: dict[str, Any]) -> Any: ...


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-response (a timeout test) is not an error here


def make_handler(server: Served) -> type[BaseHTTPRequestHandler]:
    """The handler class of one server: `_Handler` bound to it, with its own random source."""
    return type("Handler", (_Handler,), {"fake": server, "rng": random.Random(0)})


_RERANK_PATHS = ("/v1/rerank", "/rerank", "/v2/rerank")
_REFUSED = object()


class _Handler(BaseHTTPRequestHandler):
    """One connection to the fake server; ``fake`` is set on the subclass each server makes."""

    fake: Served
    rng: random.Random
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the second waits ~40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True
    # A client that withholds what it announced frees its thread after this many seconds.
    timeout = 30.0

    def setup(self) -> None:
        super().setup()
        self.fake._count_connection()

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, bytes):
            payload, ctype = body, "text/plain"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _refuse(self, status: int, message: str) -> None:
        """Answer an error and close: the rest of the request is not read."""
        self.close_connection = True
        self._send(status, error_body(message, "error", code=status), {"Connection": "close"})

    def _read_body(self) -> Any:
        """The request body, parsed as JSON when it is; ``_REFUSED`` once a 400 or 413 is sent."""
        announced = self.headers.get("Content-Length")
        if announced is None:
            length = 0
        elif not announced.strip().isdigit():
            self._refuse(400, f"Content-Length must be a non-negative integer, got {announced[:40]!r}")
            return _REFUSED
        else:
            length = int(announced)
        if length > self.fake.max_request_bytes:
            self._refuse(413, f"request body of {length} bytes is over {self.fake.max_request_bytes}")
            return _REFUSED
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def do_GET(self) -> None:
        self._record(None)
        path = self.path.split("?")[0]
        fake = self.fake
        if path in ("/v1/models", "/models"):
            card = {"id": fake.served_model_name, "object": "model", "max_model_len": fake.max_model_len}
            self._send(200, {"object": "list", "data": [card]})
        elif path == "/health":
            self._send(200, b"")
        elif path == "/version":
            self._send(200, {"version": "0.33.0"})
        elif path == "/stats":
            self._send(200, {"connections": fake.connections, "requests": len(fake.requests)})
        else:
            self._send(404, {"detail": "Not Found"})

    def _record(self, body: Any) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake._record(RecordedRequest(self.command, self.path, headers, body))

    def do_POST(self) -> None:
        body = self._read_body()
        if body is _REFUSED:
            return
        self._record(body)
        fake = self.fake
        if self.path.split("?")[0] not in _RERANK_PATHS:  # a query string is the client's own business
            answer = fake.utility(self.path, body)
            self._send(*(answer or (404, {"detail": "Not Found"})))
            return
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            self._send(401, {"error": "Unauthorized"})
            return
        fake._enter(+1)
        try:
            self._rerank(body)
        finally:
            fake._enter(-1)

    def _rerank(self, body: Any) -> None:
        fault = self.fake._next_fault()
        if fault is not None and act_out(self, fault):
            return
        if not isinstance(body, dict):
            self._send(400, error_body("body must be a JSON object", "error"))
            return
        status, response = self.fake.rerank(body)
        headers: dict[str, str] = {}
        if fault is not None and status == 200:
            corrupt(fault.kind, fault.params, response, self.rng)
            if fault.kind == "echo_headers":
                headers = {"X-Echo-Authorization": str(self.headers.get("Authorization"))}
        self._send(status, self.fake.shape(response, body) if status == 200 else response, headers)

    def raw(self, status: int, headers: dict[str, str], chunks: Any, *, interval: float = 0.0) -> None:
        """Send a status line and headers, then each chunk of ``chunks``, ``interval`` s apart."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)
            if interval:
                time.sleep(interval)


def closed_port_url() -> str:
    """The URL of a loopback port that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
