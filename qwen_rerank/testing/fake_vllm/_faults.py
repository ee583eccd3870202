"""The misbehaviours the fake server shows on demand (the kinds are listed in the package docstring).

A fault either writes the whole response itself (`act_out`: an error status, a dropped connection,
a body that trickles, a bomb...) or lets the server answer and then spoils the results
(`corrupt`: shuffled, a missing index, a NaN score...).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qwen_rerank.testing.fake_vllm._dialects import error_body

FAULT_KINDS = frozenset(
    {
        "delay",
        "status",
        "echo_auth",
        "garbage",
        "json",
        "shuffle",
        "wrong_text",
        "drop_index",
        "duplicate_index",
        "bad_index",
        "nan_score",
        "string_score",
        "drop",
        "trickle",
        "break_body",
        "gzip_bomb",
        "huge",
        "deep_json",
        "echo_headers",
        "constant",
    }
)


@dataclass
class Fault:
    kind: str
    times: int = 1
    params: dict[str, Any] = field(default_factory=dict)


def act_out(handler: Any, fault: Fault) -> bool:
    """Act out ``fault`` on ``handler``'s request; True when the response has been sent (or dropped)."""
    p = fault.params
    if fault.kind == "delay":
        time.sleep(float(p.get("seconds", 1.0)))
        return False
    act = _RAW_FAULTS.get(fault.kind)
    if act is None:
        return False
    act(handler, p)
    return True


def corrupt(kind: str, params: dict[str, Any], response: dict[str, Any], rng: random.Random) -> None:
    """Spoil the results of a vLLM-shaped ``response`` in place, as fault ``kind`` says."""
    results: list[dict[str, Any]] = response["results"]
    n = len(results)
    if kind == "shuffle":
        rng.shuffle(results)
    elif kind == "wrong_text":
        texts = [r["document"]["text"] for r in results]
        for r, text in zip(results, texts[1:] + texts[:1], strict=True):
            r["document"] = {"text": text}
    elif kind == "drop_index":
        results.pop(rng.randrange(n))
    elif kind == "duplicate_index" and n > 1:
        results[-1]["index"] = results[0]["index"]
    elif kind == "bad_index":
        results[rng.randrange(n)]["index"] = n
    elif kind == "nan_score":
        results[rng.randrange(n)]["relevance_score"] = math.nan
    elif kind == "string_score":
        r = results[rng.randrange(n)]
        r["relevance_score"] = str(r["relevance_score"])
    elif kind == "constant":
        for r in results:
            r["relevance_score"] = float(params.get("value", 0.5))


# Faults that write the response themselves: fn(handler, params). The handler offers ``_send``
# (a whole response), ``raw`` (status, headers, then chunks) and the connection.
def _drop(handler: Any, p: dict[str, Any]) -> None:
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def _status(handler: Any, p: dict[str, Any]) -> None:
    status = int(p.get("status", 503))
    shape = p.get("shape", "error")
    message = p.get("message", f"fake failure {status}")
    headers = {"Retry-After": str(p["retry_after"])} if "retry_after" in p else {}
    body = message.encode() if shape == "text" else error_body(message, shape, code=status)
    handler._send(status, body, headers)


def _echo_auth(handler: Any, p: dict[str, Any]) -> None:
    message = f"bad request; you sent Authorization: {handler.headers.get('Authorization')}"
    handler._send(400, error_body(message, "error"))


def _garbage(handler: Any, p: dict[str, Any]) -> None:
    handler._send(200, b"<html>502 Bad Gateway</html>")


def _json(handler: Any, p: dict[str, Any]) -> None:
    handler._send(200, p.get("body"))


def _trickle(handler: Any, p: dict[str, Any]) -> None:
    body = b'{"results": []}' + b" " * int(p.get("size", 4096))
    step = int(p.get("chunk", 1))
    chunks = (body[i : i + step] for i in range(0, len(body), step))
    handler.raw(
        200,
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        chunks,
        interval=float(p.get("interval", 0.1)),
    )


def _break_body(handler: Any, p: dict[str, Any]) -> None:
    body = b'{"results": [{"index": 0, "relevance_score": 0.5}]}'
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body) + 1000)}
    handler.raw(200, headers, [body[:20]])
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


@functools.lru_cache(maxsize=4)
def _gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block))]
    return b"".join([*parts, packer.flush()])


def _gzip_bomb(handler: Any, p: dict[str, Any]) -> None:
    body = _gzip_of_zeros(int(p.get("size", 200 << 20)))
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Content-Length": str(len(body)),
    }
    step = 16384
    handler.raw(200, headers, (body[i : i + step] for i in range(0, len(body), step)))


def _huge(handler: Any, p: dict[str, Any]) -> None:
    size, step = int(p.get("size", 64 << 20)), 1 << 16
    head, tail = b'{"results": [], "padding": "', b'"}'
    headers = {"Content-Type": "application/json", "Content-Length": str(len(head) + size + len(tail))}
    filler = b"x" * step
    chunks = [head, *(filler[: min(step, size - done)] for done in range(0, size, step)), tail]
    with contextlib.suppress(OSError):  # the client stops reading: that is the point
        handler.raw(200, headers, chunks)


def _deep_json(handler: Any, p: dict[str, Any]) -> None:
    depth = int(p.get("depth", 100_000))
    body = b"[" * depth + b"]" * depth
    handler.raw(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, [body])


_RAW_FAULTS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "drop": _drop,
    "status": _status,
    "echo_auth": _echo_auth,
    "garbage": _garbage,
    "json": _json,
    "trickle": _trickle,
    "break_body": _break_body,
    "gzip_bomb": _gzip_bomb,
    "huge": _huge,
    "deep_json": _deep_json,
}
