"""A fake rerank server on loopback: real HTTP, vLLM's, SGLang's and Cohere's shapes, faults on demand.

Use it to test an application against a server that behaves like ``vllm serve
Qwen/Qwen3-Reranker-* --runner pooling --hf_overrides ...``, and that misbehaves when asked,
without a GPU:

```python
from qwen_rerank import VLLMReranker
from qwen_rerank.testing import FakeVLLMServer, make_tiny_reranker

with FakeVLLMServer(str(make_tiny_reranker("/tmp/tiny"))) as server:
    reranker = VLLMReranker(server.url)
    reranker.score("what is a panda?", ["A bear.", "A city."])
    server.add_fault("status", status=503, times=2)   # the next 2 rerank calls fail
    server.requests                    # recorded RecordedRequest(method, path, headers, body)
```

Or from a shell: ``python -m qwen_rerank.testing.fake_vllm [--model PATH] [--api sglang]``
prints the URL and serves until Ctrl-C (without ``--model`` it builds the tiny model once).

It shares no code with qwen_rerank on purpose. ``api`` picks the wire format, served at
``/rerank``, ``/v1/rerank`` and ``/v2/rerank`` alike:

- ``"vllm"``: ``{"model"?, "query", "documents", "top_n"?, "instruction"?,
  "chat_template_kwargs"?, "max_tokens_per_doc"?}`` answered with ``{"id", "model",
  "usage", "results": [{"index", "document": {"text"}, "relevance_score"}]}``.
- ``"sglang"``: ``{"query", "documents", "instruct"?, "top_n"?, "return_documents"?}``
  answered with a bare list ``[{"score", "index", "document"?, "meta_info"}]``
  (``meta_info.prompt_tokens`` per document); a ``model`` field is ignored.
- ``"cohere"``: ``{"model", "query", "documents", "top_n"?}`` (model required) answered
  with ``{"id", "results": [{"index", "relevance_score"}], "meta": {"tokens": ...}}``.

Results are sorted by score, highest first. Without a score template (the default, like
vLLM started without ``--chat-template``) a pair is scored from the plain concatenation
``query + document``, tokenized by the full tokenizer (so ``<|im_end|>`` in text becomes
the control token, as in vLLM). With ``template=True`` it renders the Qwen3 reranker
template around the raw query and document, with the dialect's instruction field (or the
default). A prompt longer than ``max_model_len`` tokens is refused with vLLM's HTTP 400.
``GET /v1/models``, ``GET /health`` and ``GET /stats`` answer too.

Scores come from the tiny model through transformers (softmax over the "no"/"yes" logits at
the last position); with ``model_path=None`` the server answers at once with a fake,
deterministic score per pair (for benchmarks of the client alone).

Faults apply to rerank requests, in the order they were added; ``times`` says how many
requests each one hits. Kinds:

==================  =============================================================
``delay``           sleep ``seconds`` then answer normally
``status``          answer ``status`` with an error body; ``shape`` is ``"error"``
                    (``{"error": {...}}``), ``"flat"`` (``{"object": "error", ...}``),
                    ``"string"`` (``{"error": "..."}``) or ``"text"`` (plain text);
                    ``message``; optional ``retry_after`` header value
``echo_auth``       400 whose message repeats the request's Authorization header
``echo_headers``    a normal answer with the Authorization header echoed in a
                    response header (``X-Echo-Authorization``)
``garbage``         200 with a body that is not JSON
``json``            200 with ``body`` (any JSON value) as the whole response
``shuffle``         results in a random order instead of by score
``wrong_text``      ``document.text`` of the results rotated (index stays right)
``drop_index``      one result missing
``duplicate_index`` one result's index repeated in place of another
``bad_index``       one index out of range (``len(documents)``)
``nan_score``       one score NaN
``string_score``    one score sent as a JSON string
``constant``        every score equal to ``value`` (default 0.5), a known server bug
``drop``            close the connection without sending any response
``trickle``         200 headers, then a ``size``-byte body ``chunk`` bytes every
                    ``interval`` seconds
``break_body``      200 headers, part of the body, then the connection closes
``gzip_bomb``       200 with ``Content-Encoding: gzip``: ``size`` zero bytes
                    (default 200 MB) compressed to about 0.1% of that
``huge``            200 with a JSON body of ``size`` bytes (default 64 MB)
``deep_json``       200 with ``depth`` nested JSON arrays (default 100,000)
==================  =============================================================
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import socket
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeVLLMServer", "Fault", "RecordedRequest", "closed_port_url"]

# The Qwen3-Reranker prompt, spelled here independently of qwen_rerank.prompt, as the
# qwen3_reranker.jinja score template renders it.
_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
_TEMPLATE = (
    "<|im_start|>system\n" + _SYSTEM + "<|im_end|>\n<|im_start|>user\n"
    "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)

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
APIS = frozenset({"vllm", "sglang", "cohere"})


@dataclass
class Fault:
    kind: str
    times: int = 1
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw bytes when the body is not JSON


class _Scorer:
    """softmax([logit(no), logit(yes)])[1] at the last position, with transformers."""

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from qwen_rerank.local import quiet_progress_bars

        self.torch = torch
        with quiet_progress_bars():  # a server in a test or an example prints no loading bars
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.yes = self.tokenizer.convert_tokens_to_ids("yes")
        self.no = self.tokenizer.convert_tokens_to_ids("no")
        self.pad = self.tokenizer.pad_token_id or 0
        self.lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text)["input_ids"]
        return ids

    def score(self, prompts: list[list[int]]) -> list[float]:
        torch = self.torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        with self.lock, torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
            pair = torch.stack([logits[:, self.no], logits[:, self.yes]], dim=1).float()
            scores: list[float] = torch.softmax(pair, dim=1)[:, 1].tolist()
        return scores


class FakeVLLMServer:
    """A rerank server look-alike on 127.0.0.1, served from a background thread.

    Args:
        model_path: Checkpoint folder to score with (e.g. from ``make_tiny_reranker``);
            ``None`` answers at once with deterministic fake scores.
        served_model_name: The model name it serves; another ``model`` gets HTTP 404.
        template: Emulate ``--chat-template qwen3_reranker.jinja`` (the server wraps
            query and document in the Qwen3 prompt).
        max_model_len: Longest prompt, in tokens; longer ones get vLLM's HTTP 400.
        api_key: When set, rerank requests without ``Authorization: Bearer <key>`` get 401.
        legacy_usage: Report only ``usage.total_tokens``, as older vLLM did.
        api: ``"vllm"``, ``"sglang"`` or ``"cohere"``: the wire format (module docstring).
        port: Port on 127.0.0.1; 0 picks a free one (see `url`).
        max_request_bytes: Largest request body read; a longer one gets HTTP 413, and a
            ``Content-Length`` that is not a non-negative integer gets HTTP 400, both
            without reading the body. A client that sends less than it announced is
            dropped after 30 s of silence.

    Use it as a context manager (``with FakeVLLMServer(...) as server:``), or call
    `start` and `stop`. `add_fault` makes the next rerank requests
    misbehave; `requests` records what arrived; `reset` forgets both.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        served_model_name: str = "Qwen/Qwen3-Reranker-0.6B",
        template: bool = False,
        max_model_len: int = 40960,
        api_key: str | None = None,
        legacy_usage: bool = False,
        api: str = "vllm",
        port: int = 0,
        max_request_bytes: int = 32 << 20,
    ) -> None:
        if api not in APIS:
            raise ValueError(f"api must be one of {sorted(APIS)}, got {api!r}")
        self.api = self._default_api = api
        self.served_model_name = served_model_name
        self.template = template
        self.max_model_len = self._default_max_model_len = max_model_len
        self.api_key = api_key
        self.legacy_usage = legacy_usage
        self.max_request_bytes = max_request_bytes
        self._scorer = _Scorer(model_path) if model_path is not None else None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # most rerank requests handled at the same time
        self._httpd = _QuietHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeVLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-vllm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeVLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------------
    def add_fault(self, kind: str, *, times: int = 1, **params: Any) -> None:
        """Make the next ``times`` rerank requests misbehave as ``kind`` (see module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(Fault(kind, times, params))

    def reset(self) -> None:
        """Forget faults and recorded requests; restore the default settings."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.peak_in_flight = 0
        self.template = False
        self.api_key = None
        self.legacy_usage = False
        self.max_model_len = self._default_max_model_len
        self.api = self._default_api

    @property
    def rerank_requests(self) -> list[RecordedRequest]:
        """The recorded rerank requests (their bodies are the sub-requests the client sent)."""
        return [r for r in self.requests if r.path.endswith("/rerank")]

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _enter(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    # -- vLLM behaviour ----------------------------------------------------------------------
    def prompt_text(self, query: str, document: str, body: dict[str, Any]) -> str:
        if not self.template:
            return query + document
        kwargs = body.get("chat_template_kwargs") or {}
        if self.api == "sglang":
            instruction = body.get("instruct") or _DEFAULT_INSTRUCTION
        elif self.api == "cohere":
            instruction = _DEFAULT_INSTRUCTION
        else:
            instruction = body.get("instruction") or kwargs.get("instruction") or _DEFAULT_INSTRUCTION
        return _TEMPLATE.format(instruction=instruction, query=query, document=document)

    def _score(self, query: str, documents: list[Any], body: dict[str, Any]) -> tuple[Any, Any]:
        """Scores and token counts of every document, or an error status and body."""
        max_doc = (body.get("max_tokens_per_doc") or 0) if self.api == "vllm" else 0
        prompts: list[list[int]] = []
        texts: list[str] = []
        for doc in documents:
            if not isinstance(doc, str):
                return 400, _error_body("documents must be strings", "error")
            if self._scorer is not None and self.template and max_doc > 0:
                doc = self._scorer.tokenizer.decode(self._scorer.encode(doc)[:max_doc])
            text = self.prompt_text(query, doc, body)
            texts.append(text)
            if self._scorer is not None:
                ids = self._scorer.encode(text)
                if len(ids) > self.max_model_len:
                    return 400, _error_body(
                        f"This model's maximum context length is {self.max_model_len} tokens. However, "
                        f"your request has {len(ids)} input tokens. Please reduce the length of the input.",
                        "error",
                    )
                prompts.append(ids)
        if self._scorer is not None:
            return self._scorer.score(prompts), [len(p) for p in prompts]
        return [zlib.crc32(t.encode()) / 2**32 for t in texts], [len(t) // 4 for t in texts]

    def rerank(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            return 400, _error_body("query must be a string and documents a non-empty list", "error")
        model = body.get("model") if self.api != "sglang" else None  # SGLang ignores it
        if self.api == "cohere" and model is None:
            return 400, _error_body("model is required", "error")
        if model is not None and model != self.served_model_name:
            return 404, _error_body(f"The model `{model}` does not exist.", "error", code=404)
        scored = self._score(query, documents, body)
        if isinstance(scored[1], dict):
            return scored
        scores, counts = scored
        tokens = sum(counts)
        order = sorted(range(len(documents)), key=lambda i: -scores[i])
        top_n = body.get("top_n") or 0
        if top_n > 0:
            order = order[:top_n]
        results = [
            {
                "index": i,
                "document": {"text": documents[i]},
                "relevance_score": scores[i],
                "_tokens": counts[i],
            }
            for i in order
        ]
        usage: dict[str, int] = {"total_tokens": tokens}
        if not self.legacy_usage:
            usage["prompt_tokens"] = tokens
        return 200, {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": self.served_model_name,
            "usage": usage,
            "results": results,
        }

    def shape(self, response: dict[str, Any], body: dict[str, Any]) -> Any:
        """A vLLM-shaped 200 response in this server's dialect."""
        results = response["results"]
        tokens = [r.pop("_tokens", 0) for r in results]
        if self.api == "vllm":
            return response
        if self.api == "sglang":
            keep_text = body.get("return_documents", True)
            return [
                {
                    "score": r["relevance_score"],
                    "index": r["index"],
                    **({"document": r["document"]["text"]} if keep_text else {}),
                    "meta_info": {"id": uuid.uuid4().hex, "prompt_tokens": n, "finish_reason": None},
                }
                for r, n in zip(results, tokens, strict=True)
            ]
        return {
            "id": response["id"],
            "results": [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in results],
            "meta": {
                "api_version": {"version": "2"},
                "billed_units": {"search_units": 1},
                "tokens": {"input_tokens": sum(tokens), "output_tokens": 0},
            },
        }


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-response (a timeout test) is not an error here


def _error_body(message: str, shape: str, *, code: int = 400, kind: str = "BadRequestError") -> Any:
    if shape == "flat":
        return {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    if shape == "string":
        return {"error": message}
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _corrupt(kind: str, params: dict[str, Any], response: dict[str, Any], rng: random.Random) -> None:
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


class _Handler(BaseHTTPRequestHandler):
    """One connection to the fake server; ``fake`` is set on the subclass each server makes."""

    fake: FakeVLLMServer
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
        self._send(status, _error_body(message, "error", code=status), {"Connection": "close"})

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
        if self.path not in ("/v1/rerank", "/rerank", "/v2/rerank"):
            self._send(404, {"detail": "Not Found"})
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
        if fault is not None and _act_out(self, fault):
            return
        if not isinstance(body, dict):
            self._send(400, _error_body("body must be a JSON object", "error"))
            return
        status, response = self.fake.rerank(body)
        headers: dict[str, str] = {}
        if fault is not None and status == 200:
            _corrupt(fault.kind, fault.params, response, self.rng)
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


_REFUSED = object()


def _make_handler(server: FakeVLLMServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"fake": server, "rng": random.Random(0)})


def _act_out(handler: _Handler, fault: Fault) -> bool:
    """Act out ``fault``; True when the response has been sent (or dropped)."""
    p = fault.params
    if fault.kind == "delay":
        time.sleep(float(p.get("seconds", 1.0)))
        return False
    act = _RAW_FAULTS.get(fault.kind)
    if act is None:
        return False
    act(handler, p)
    return True


def _drop(handler: Any, p: dict[str, Any]) -> None:
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


def _status(handler: Any, p: dict[str, Any]) -> None:
    status = int(p.get("status", 503))
    shape = p.get("shape", "error")
    message = p.get("message", f"fake failure {status}")
    headers = {"Retry-After": str(p["retry_after"])} if "retry_after" in p else {}
    body = message.encode() if shape == "text" else _error_body(message, shape, code=status)
    handler._send(status, body, headers)


def _echo_auth(handler: Any, p: dict[str, Any]) -> None:
    message = f"bad request; you sent Authorization: {handler.headers.get('Authorization')}"
    handler._send(400, _error_body(message, "error"))


def _garbage(handler: Any, p: dict[str, Any]) -> None:
    handler._send(200, b"<html>502 Bad Gateway</html>")


def _json(handler: Any, p: dict[str, Any]) -> None:
    handler._send(200, p.get("body"))


# Faults that write the response themselves: fn(handler, params).
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


_RAW_FAULTS = {
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


def closed_port_url() -> str:
    """The URL of a loopback port that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", help="checkpoint folder to score with (default: the tiny random model)")
    parser.add_argument("--instant", action="store_true", help="answer at once with fake scores")
    parser.add_argument("--template", action="store_true", help="emulate --chat-template qwen3_reranker")
    parser.add_argument("--api", choices=sorted(APIS), default="vllm", help="wire format (default: vllm)")
    parser.add_argument("--max-model-len", type=int, default=40960, help="longest prompt accepted, tokens")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    _serve(_parse_args())
