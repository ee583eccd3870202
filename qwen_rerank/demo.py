"""A Gradio page that reranks your own documents, and the same ranking as an HTTP API.

Launch it with ``qwen-rerank demo --model PATH_OR_ID`` (or ``--base-url URL``), or::

    from qwen_rerank.demo import build_demo, launch_demo

    launch_demo(build_demo("Qwen/Qwen3-Reranker-0.6B"), host="127.0.0.1", port=7860)

The page takes a query, an instruction, documents one per line, ``top_n`` and
the backend (a local model path or hub id, or a vLLM URL; several URLs may be
separated by commas). It shows a ranked table (``rank``, ``index``, ``score``,
``document`` preview), a bar chart of the scores and the time taken. ``index``
is a document's position among the non-blank lines, from 0.

API clients call the same function as ``/rerank`` with the inputs
``(query, documents, instruction, top_n)``, then optionally ``backend``; the
first output is the table::

    from gradio_client import Client

    table, chart, timing = Client("http://127.0.0.1:7860/").predict(
        "What is the capital of China?", "Beijing is the capital.\\nParis is in France.",
        "Given a web search query, retrieve relevant passages that answer the query", None,
        api_name="/rerank",
    )

Every backend typed in the page is loaded on first use and kept (the last few),
so anyone who can reach the page can make the server load a local model or call
a URL: keep the default host, 127.0.0.1, unless you trust the network. Gradio's
analytics are off; the page makes no request beyond its own server.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.factory import create_reranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.results import RerankResult

__all__ = ["build_demo", "launch_demo"]

TABLE_COLUMNS = ["rank", "index", "score", "document"]
_PREVIEW_CHARS = 160
_KEPT_BACKENDS = 3
_EXAMPLE_QUERY = "What is the capital of China?"
_EXAMPLE_DOCUMENTS = "\n".join(
    [
        "The capital of China is Beijing.",
        "Gravity is a force that attracts two bodies towards each other.",
        "北京是中华人民共和国的首都。",
        "China is a country in East Asia with a population of over 1.4 billion.",
        "Paris is the capital of France.",
    ]
)


class _Backends:
    """Rerankers by backend string, built on first use; the default one is never dropped."""

    def __init__(self, default: str, reranker: Reranker | None, factory: Callable[[str], Reranker]) -> None:
        self.default = default
        self._factory = factory
        self._lock = threading.Lock()
        self._pinned: Reranker | None = reranker
        self._others: OrderedDict[str, Reranker] = OrderedDict()

    def get(self, backend: str) -> Reranker:
        with self._lock:
            if backend == self.default:
                if self._pinned is None:
                    self._pinned = self._factory(backend)
                return self._pinned
            if backend in self._others:
                self._others.move_to_end(backend)
                return self._others[backend]
            reranker = self._factory(backend)
            self._others[backend] = reranker
            while len(self._others) > _KEPT_BACKENDS:
                _, dropped = self._others.popitem(last=False)
                dropped.close()
            return reranker


def build_demo(
    backend: str,
    *,
    reranker: Reranker | None = None,
    instruction: str | None = None,
    local_options: Mapping[str, Any] | None = None,
    remote_options: Mapping[str, Any] | None = None,
    title: str = "Qwen3-Reranker",
) -> Any:
    """Build the Gradio app (a ``gr.Blocks``); launch it with :func:`launch_demo`.

    Args:
        backend: The backend the page starts with: a local model path or hub
            id, or a vLLM URL (``http://...``; commas separate replicas).
        reranker: An already-built reranker for ``backend``; otherwise it is
            built on the first request.
        instruction: The instruction the page starts with (default
            :data:`~qwen_rerank.DEFAULT_INSTRUCTION`).
        local_options: Keyword arguments for local backends, e.g. ``device``.
        remote_options: Keyword arguments for vLLM backends, e.g. ``template``;
            ``model`` is the model name to ask for (default: the server's).
        title: The page title.

    Raises:
        MissingDependencyError: Gradio is not installed (``pip install "qwen-rerank[demo]"``).
    """
    gr = require("gradio", "demo")
    local = dict(local_options or {})
    remote = dict(remote_options or {})
    remote_model = remote.pop("model", None)

    def make(name: str) -> Reranker:
        urls = _urls(name)
        if urls:
            return create_reranker(remote_model, base_url=urls[0] if len(urls) == 1 else urls, **remote)
        return create_reranker(name, **local)

    backends = _Backends(backend, reranker, make)

    def rerank(
        query: str,
        documents: str,
        instruction: str | None = None,
        top_n: float | None = None,
        backend: str = backend,
    ) -> tuple[Any, Any, str]:
        """Rank documents (one per line) for a query: the ranked table, the chart data, the timing."""
        try:
            return _rank(backends, query, documents, instruction, top_n, backend)
        except QwenRerankError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except _PageError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {title}\nPaste documents, one per line, and rank them by relevance to the query. "
            "Scores are the model's probability that a document answers the query."
        )
        with gr.Row():
            with gr.Column(scale=1):
                query_box = gr.Textbox(label="Query", value=_EXAMPLE_QUERY, lines=1)
                instruction_box = gr.Textbox(
                    label="Instruction", value=instruction or DEFAULT_INSTRUCTION, lines=2
                )
                documents_box = gr.Textbox(
                    label="Documents, one per line", value=_EXAMPLE_DOCUMENTS, lines=10, max_lines=40
                )
                with gr.Row():
                    top_n_box = gr.Number(label="top_n (empty shows all)", value=None, precision=0, step=1)
                    backend_box = gr.Textbox(
                        label="Backend: local model path or hub id, or vLLM URL", value=backend
                    )
                button = gr.Button("Rerank", variant="primary")
            with gr.Column(scale=1):
                table = gr.Dataframe(
                    headers=TABLE_COLUMNS,
                    datatype=["number", "number", "number", "str"],
                    label="Ranking",
                    interactive=False,
                    wrap=True,
                )
                chart = gr.BarPlot(
                    x="document", y="score", sort="-y", y_lim=[0.0, 1.0], label="Scores", x_label_angle=-30
                )
                timing = gr.Textbox(label="Time taken", interactive=False)
        inputs = [query_box, documents_box, instruction_box, top_n_box, backend_box]
        outputs = [table, chart, timing]
        # One queue for both triggers: a local model scores one request at a time anyway.
        shared = {"inputs": inputs, "outputs": outputs, "concurrency_id": "rerank"}
        button.click(rerank, api_name="rerank", **shared)
        query_box.submit(rerank, api_visibility="private", **shared)
    return app


def launch_demo(app: Any, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    """Serve ``app`` on ``host:port``: no share link, no server-side rendering process.

    With ``block=True`` it prints the page's URL and serves until interrupted
    (Ctrl+C). With ``block=False`` it returns once the server is up; stop it
    with ``app.close()``.
    """
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        prevent_thread_lock=True,
        quiet=True,
    )
    if block:
        print(f"Serving the qwen-rerank demo at {app.local_url} (Ctrl+C to stop)", flush=True)
        app.block_thread()


class _PageError(Exception):
    """Input the page cannot rank; shown as a message."""


def _rank(
    backends: _Backends,
    query: str | None,
    documents: str | None,
    instruction: str | None,
    top_n: float | None,
    backend: str | None,
) -> tuple[Any, Any, str]:
    pd = require("pandas", "demo")
    if not query or not query.strip():
        raise _PageError("Enter a query.")
    lines = (documents or "").splitlines()
    docs = [line for line in lines if line.strip()]
    if not docs:
        raise _PageError("Enter at least one document, one per line.")
    n = _top_n(top_n)
    name = (backend or "").strip()
    if not name:
        raise _PageError("Enter a backend: a local model path or hub id, or a vLLM URL.")
    reranker = backends.get(name)
    start = time.perf_counter()
    results = reranker.rerank(query, docs, top_n=n, instruction=(instruction or "").strip() or None)
    elapsed = time.perf_counter() - start
    table = pd.DataFrame([_row(rank, r) for rank, r in enumerate(results, start=1)], columns=TABLE_COLUMNS)
    chart = pd.DataFrame(
        {
            "document": [f"{rank}. doc {r.index}" for rank, r in enumerate(results, start=1)],
            "score": [r.score for r in results],
        }
    )
    message = f"Scored {len(docs)} document{'s' if len(docs) != 1 else ''} in {elapsed:.3f} s with {name}."
    if len(results) < len(docs):
        message += f" Showing the top {len(results)}."
    skipped = len(lines) - len(docs)
    if skipped:
        message += f" Skipped {skipped} blank line{'s' if skipped != 1 else ''}."
    return table, chart, message


def _row(rank: int, result: RerankResult) -> list[Any]:
    flat = " ".join(result.document.split())
    preview = flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"
    return [rank, result.index, result.score, preview]


def _top_n(value: float | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise _PageError(f"top_n must be a whole number of at least 1 (empty shows all), got {value}.")
    return int(value)


def _urls(backend: str) -> list[str]:
    parts = [part.strip() for part in backend.split(",")]
    if parts and all(part.startswith(("http://", "https://")) for part in parts):
        return parts
    return []
