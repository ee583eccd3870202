"""The fake hosted server: one thread on loopback, its requests recorded, faults on demand."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from qwen_rerank.testing.fake_hosted._common import FAULT_KINDS, Failure, Fault, RecordedRequest, Truncation
from qwen_rerank.testing.fake_hosted._scorer import Scorer
from qwen_rerank.testing.fake_hosted._text import HANDLERS
from qwen_rerank.testing.fake_hosted._vl import VL_LIMITS, VL_MODELS

__all__ = ["APIS", "DASHSCOPE_PATH", "FakeHostedServer"]

APIS = ("dashscope", "siliconflow", "deepinfra")
DASHSCOPE_PATH = "/api/v1/services/rerank/text-rerank/text-rerank"
_QWEN3 = ("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B")
_LIMITS: dict[str, dict[str, int | None]] = {
    "dashscope": {"max_documents": 500, "max_request_tokens": 30000, "max_item_tokens": 4000},
    "siliconflow": {"max_pair_tokens": 32768},
    "deepinfra": {"max_documents": 1024, "max_pair_tokens": 32768},
}
_LIMIT_NAMES = frozenset({"max_documents", "max_request_tokens", "max_item_tokens", "max_pair_tokens"})


class FakeHostedServer:
    """A hosted rerank API look-alike on 127.0.0.1, served from a background thread.

    Args:
        api: ``"dashscope"``, ``"siliconflow"`` or ``"deepinfra"``.
        model_path: Checkpoint folder to score with; ``None`` scores at once with fake scores.
        api_key: The key it accepts (``Authorization: Bearer <key>``); ``None`` accepts any.
        models: The model names it serves (default: the provider's Qwen3 rerankers; at
            DashScope ``qwen3-rerank`` and ``qwen3-vl-rerank``).
        max_documents, max_request_tokens, max_item_tokens, max_pair_tokens: Override the
            provider's limits (module docstring); ``0`` lifts one. At DashScope they override
            ``qwen3-vl-rerank``'s too, and so do ``max_image_documents`` and
            ``max_video_documents`` (documents holding an image, a video, per request).
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
        unknown = set(limits) - {*_LIMIT_NAMES, *VL_LIMITS}
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}")
        self.api, self.api_key, self.applies_instruction, self.usage_shape = (
            api,
            api_key,
            applies_instruction,
            usage_shape,
        )
        self.models = models or (("qwen3-rerank", *VL_MODELS) if api == "dashscope" else _QWEN3)
        self.limits = {**_LIMITS[api], **{k: v for k, v in limits.items() if k in _LIMIT_NAMES}}
        self.vl_limits = {**VL_LIMITS, **{k: v for k, v in limits.items() if k in VL_LIMITS}}
        self._scorer = Scorer(model_path)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
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
            self._faults.append(Fault(kind, times, params))

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

    def vl_limit(self, name: str) -> int | None:
        """The limit ``name`` of ``qwen3-vl-rerank`` in force (``None``: none)."""
        return self.vl_limits.get(name) or None

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
            reply = HANDLERS[self.api](self, number, model, body)
            if fault is not None and fault.kind == "shuffle" and self.api != "deepinfra":
                results = reply["output"]["results"] if self.api == "dashscope" else reply["results"]
                self._rng.shuffle(results)
            return 200, reply, {}
        except Failure as failure:
            return failure.status, failure.body, failure.headers
        finally:
            with self._lock:
                self.in_flight -= 1

    def _next_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return fault

    def _route(self, path: str) -> str | None:
        path = path.split("?")[0]
        if self.api == "dashscope" and path == DASHSCOPE_PATH:
            return None
        if self.api == "siliconflow" and path == "/v1/rerank":
            return None
        if self.api == "deepinfra" and path.startswith("/v1/inference/"):
            model = path[len("/v1/inference/") :]
            if model not in self.models:
                raise Failure(404, {"detail": {"error": "Model is not available"}})
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
            raise Failure(401, "Invalid token")
        raise Failure(401, {"detail": "User is not authorized to access this resource"})

    def _fault_failure(self, fault: Fault) -> Failure:
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

    def error(self, status: int, code: Any, message: str) -> Failure:
        """The provider's error body for ``status``, as a `Failure` to raise."""
        if self.api == "dashscope":
            return Failure(status, {"code": code, "message": message, "request_id": str(uuid.uuid4())})
        if self.api == "siliconflow":
            return Failure(status, {"code": code, "message": message, "data": None})
        return Failure(status, {"detail": message})

    def invalid(self, message: str, *, kind: str = "value_error", loc: list[str] | None = None) -> Failure:
        """The provider's answer to a request its reference does not allow (DeepInfra: FastAPI's 422)."""
        if self.api == "deepinfra":
            return Failure(422, {"detail": [{"type": kind, "loc": loc or ["body"], "msg": message}]})
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
