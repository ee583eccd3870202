"""`FakeVLLMServer`: the settings, the test controls and the rerank answer of the fake server.

The wire formats live in ``_dialects``, the misbehaviours in ``_faults``, the scoring in
``_scoring`` and the HTTP handling in ``_http``; the package docstring describes them all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from qwen_rerank.testing.fake_vllm import _dialects
from qwen_rerank.testing.fake_vllm._content import as_text
from qwen_rerank.testing.fake_vllm._dialects import APIS, Refusal
from qwen_rerank.testing.fake_vllm._faults import FAULT_KINDS, Fault
from qwen_rerank.testing.fake_vllm._http import QuietHTTPServer, RecordedRequest, make_handler
from qwen_rerank.testing.fake_vllm._scoring import ModelScorer, score_documents


class FakeVLLMServer:
    """A rerank server look-alike on 127.0.0.1, served from a background thread.

    Args:
        model_path: Checkpoint folder to score with (e.g. from ``make_tiny_reranker``);
            ``None`` answers at once with deterministic fake scores.
        served_model_name: The model name it serves; another ``model`` gets HTTP 404.
        template: Emulate a server started with ``--chat-template``: ``True`` for a template
            that renders the model card's prompt (qwen-rerank's), ``"vllm"`` for the one vLLM
            ships, which vLLM renders without the prompt's final newline.
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
        template: bool | str = False,
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
        self._scorer = ModelScorer(model_path) if model_path is not None else None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # most rerank requests handled at the same time
        self._httpd = QuietHTTPServer(("127.0.0.1", port), make_handler(self))
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
        """The text scored for one pair, as this server's dialect and template build it."""
        return _dialects.prompt_text(self.api, self.template, query, document, body)

    def rerank(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and the vLLM-shaped answer (or error body) to a rerank request body."""
        try:
            _dialects.check_request(self.api, body, self.served_model_name)
            query = as_text(self.api, body["query"], "query")
            documents = [as_text(self.api, doc, f"documents[{k}]") for k, doc in enumerate(body["documents"])]
            scores, counts = score_documents(
                self._scorer,
                documents,
                lambda document: self.prompt_text(query, document, body),
                cut_to=_dialects.max_tokens_per_doc(self.api, body) if self.template else None,
                max_model_len=self.max_model_len,
            )
        except Refusal as refusal:
            return refusal.status, refusal.body
        response = _dialects.vllm_response(
            body, scores, counts, model=self.served_model_name, legacy_usage=self.legacy_usage
        )
        return 200, response

    def utility(self, path: str, body: Any) -> tuple[int, Any] | None:
        """vLLM's other POST routes: ``/score`` and ``/v1/score``, ``/tokenize``, ``/detokenize``.

        ``None`` for any other path (HTTP 404). ``/tokenize`` of ``messages`` renders them as the
        server's template does; without one, as Qwen3's chat template renders roles it does
        not know (the generation prompt alone).
        """
        if not isinstance(body, dict):
            return None
        if path in ("/score", "/v1/score"):
            return self._score(body)
        if self._scorer is None or path not in ("/tokenize", "/detokenize"):
            return None
        if path == "/detokenize":
            return 200, {"prompt": self._scorer.tokenizer.decode(body.get("tokens") or [])}
        text = body.get("prompt")
        if "messages" in body:
            roles = {m.get("role"): m.get("content") for m in body["messages"] if isinstance(m, dict)}
            kwargs = {"chat_template_kwargs": body.get("chat_template_kwargs")}
            text = (
                self.prompt_text(str(roles.get("query")), str(roles.get("document")), kwargs)
                if self.template
                else "<|im_start|>assistant\n"
            )
        tokens = self._scorer.encode(str(text))
        return 200, {
            "count": len(tokens),
            "max_model_len": self.max_model_len,
            "tokens": tokens,
            "token_strs": None,
        }

    def _score(self, body: dict[str, Any]) -> tuple[int, Any]:
        """vLLM's ``/score`` of ``queries`` (or ``text_1``) against ``documents`` (or ``text_2``)."""
        query, documents = body.get("queries", body.get("text_1")), body.get("documents", body.get("text_2"))
        documents = documents if isinstance(documents, list) else [documents]
        status, answer = self.rerank({**body, "query": query, "documents": documents})
        if status != 200:
            return status, answer
        results = sorted(answer["results"], key=lambda r: r["index"])
        data = [{"index": r["index"], "object": "score", "score": r["relevance_score"]} for r in results]
        return 200, {
            "id": answer["id"],
            "object": "list",
            "created": int(time.time()),
            "model": answer["model"],
            "data": data,
            "usage": {
                **answer["usage"],
                "completion_tokens": 0,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
        }

    def shape(self, response: dict[str, Any], body: dict[str, Any]) -> Any:
        """A vLLM-shaped 200 response in this server's dialect."""
        return _dialects.shape(self.api, response, body)
