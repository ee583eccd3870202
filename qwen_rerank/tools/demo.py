"""A Gradio page that reranks your own documents, and the same ranking as an HTTP API.

Launch it with `qwen-rerank demo --model PATH_OR_ID` (or `--base-url URL`), or:

<!-- not run by the tests: serves the page until interrupted -->
```python
from qwen_rerank.tools.demo import build_demo, launch_demo

launch_demo(build_demo("Qwen/Qwen3-Reranker-0.6B"), host="127.0.0.1", port=7860)
```

The page takes a query, an instruction, documents one per line and `top_n`
(empty ranks them all; 0 and negatives are refused, as everywhere in qwen-rerank).
It shows a ranked table (`rank`, `index`, `score` to 4 decimals, a `document`
preview), horizontal bars of the 20 best scores labelled by rank and index, and
the time taken. `index` is a document's position among the non-blank lines, from
0; lines are split on `"\\n"` only (a trailing `"\\r"` is dropped), as `wc -l`
counts them.

**Backends.** The page serves only the backends its operator configured: the
one given to [`build_demo`][qwen_rerank.tools.demo.build_demo], plus any listed in
`allowed_backends` (`qwen-rerank demo --allow-backend CHOICE`, repeatable),
offered as a dropdown. A page user cannot type a model path or a URL: a backend
that was not offered is refused before anything is loaded or called, so the
operator's API key only ever goes to the URLs the operator configured. A vLLM
failure is shown in the page as one short status line (e.g. "HTTP 500"), never
with the server's response body; the full error goes to the `qwen_rerank.tools.demo`
logger. URL passwords are never shown in the page.

API clients call the same function as `/rerank` with the inputs
`(query, documents, instruction, top_n)`, then optionally `backend` (one
of the offered names); the outputs are the table, the chart's HTML and the timing:

<!-- not run by the tests: calls a page served on 127.0.0.1:7860 -->
```python
from gradio_client import Client

table, chart, timing = Client("http://127.0.0.1:7860/").predict(
    "What is the capital of China?", "Beijing is the capital.\\nParis is in France.",
    "Given a web search query, retrieve relevant passages that answer the query", None,
    api_name="/rerank",
)
```

**Images.** With a Qwen3-VL-Reranker backend, the images panel ranks uploaded
images against the query and shows them as thumbnails with their rank and score
(`/rerank_images`, inputs `(query, files, instruction, top_n, backend)`). The
page takes no image URL, so a page user cannot make the server fetch an address.

Keep the default host, 127.0.0.1, unless you trust the network. Gradio's
analytics are off; the page makes no request beyond its own server.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._secrets import display_url
from qwen_rerank._validation import check_top_n
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    QwenRerankError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
)
from qwen_rerank.factory import check_backend_options, create_reranker
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.tools._demo_images import add_image_panel, chosen_instruction, rank_images
from qwen_rerank.tools._demo_results import CHART_BARS, TABLE_COLUMNS, count_of, score_bars, table_row

__all__ = ["CHART_BARS", "TABLE_COLUMNS", "build_demo", "launch_demo", "split_lines"]

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
# On a narrow screen the table's text is smaller and its cells' padding thinner, so that the number
# columns' headers and values stay on one line down to a 400 px window.
_CSS = """
@media (max-width: 640px) {
  #ranking .header-cell, #ranking .header-cell *, #ranking .body-cell, #ranking .body-cell * {
    font-size: 12px;
  }
  #ranking .cell-wrap { padding-left: 4px; padding-right: 4px; }
}
"""
_ERROR_STYLE = (
    "padding:10px 12px;border-radius:6px;border:1px solid #dc2626;background:#fef2f2;color:#991b1b;"
    "font-weight:600"
)
_log = logging.getLogger(__name__)


class _PageError(InvalidInputError):
    """Input the demo page cannot rank; shown in the page as a message."""


def split_lines(text: str) -> list[str]:
    """`text` cut at each `"\\n"` only, a trailing `"\\r"` dropped from each line.

    Lines are counted as `wc -l` counts them: form feeds, U+2028 and the other
    characters `str.splitlines` also breaks on stay inside their line, and
    a final `"\\n"` does not start an empty last line.
    """
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class _Backends:
    """The operator's backends by page name, each built on first use; the default one is kept."""

    def __init__(
        self,
        specs: Sequence[str],
        reranker: Reranker | None,
        factory: Callable[[str], Reranker],
    ) -> None:
        self.names = _page_names(specs)
        self._specs = dict(zip(self.names, specs, strict=True))
        self.default = self.names[0]
        self._factory = factory
        self._lock = threading.Lock()
        self._pinned: Reranker | None = reranker
        self._others: OrderedDict[str, Reranker] = OrderedDict()

    def get(self, name: str) -> Reranker:
        """The reranker offered as `name`; a name that was not offered is refused before any work."""
        if name not in self._specs:
            shown = name if len(name) <= 80 else name[:79] + "…"
            raise _PageError(
                f"Backend {shown!r} is not offered by this page. Choose one of: {', '.join(self.names)}."
            )
        with self._lock:
            if name == self.default:
                if self._pinned is None:
                    self._pinned = self._factory(self._specs[name])
                return self._pinned
            if name in self._others:
                self._others.move_to_end(name)
                return self._others[name]
            reranker = self._factory(self._specs[name])
            self._others[name] = reranker
            while len(self._others) > _KEPT_BACKENDS:
                _, dropped = self._others.popitem(last=False)
                dropped.close()
            return reranker


def build_demo(
    backend: str,
    *,
    allowed_backends: Sequence[str] = (),
    reranker: Reranker | None = None,
    instruction: str | None = None,
    local_options: Mapping[str, Any] | None = None,
    remote_options: Mapping[str, Any] | None = None,
    title: str = "Qwen3-Reranker",
    note: str | None = None,
) -> Any:
    """Build the Gradio app (a `gr.Blocks`); run it with [`launch_demo`][qwen_rerank.tools.demo.launch_demo].

    Args:
        backend: The backend the page serves: a local model path or hub id, or
            a vLLM URL (`http://...`; commas separate replicas).
        allowed_backends: More backends, in the same form, that page users may
            pick from a dropdown. Nothing else can be chosen from the page.
        reranker: An already-built reranker for `backend`; otherwise it is
            built on the first request.
        instruction: The instruction the page starts with (default
            [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION]). Left at that
            default or blank, each backend uses its own instruction (a
            Qwen3-VL-Reranker's differs).
        local_options: Keyword arguments for local backends, e.g. `device`.
        remote_options: Keyword arguments for vLLM backends, e.g. `template`
            or `api_key`; `model` is the model name to ask for (default:
            the server's).
        title: The page title.
        note: A line of Markdown shown under the title, e.g. that the model is the tiny random
            test model, whose scores mean nothing (`qwen-rerank demo --tiny` says so).

    Returns:
        The app, not yet launched.

    Raises:
        MissingDependencyError: Gradio is not installed (`pip install "qwen-rerank[demo]"`).
        InvalidInputError: An option is given for the backend that does not take it
            (see [`check_backend_options`][qwen_rerank.factory.check_backend_options]).
    """
    gr = require("gradio", "demo")
    specs = list(dict.fromkeys([backend.strip(), *(b.strip() for b in allowed_backends)]))
    backends = _Backends(specs, reranker, _backend_factory(local_options, remote_options))
    rerank = _api_function(gr, backends)
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {title}\nPaste documents, one per line, and rank them by relevance to the query. "
            "Scores are the model's probability that a document answers the query."
        )
        if note:
            gr.Markdown(note, elem_id="note")
        with gr.Row():
            with gr.Column(scale=1):
                inputs, button = _input_column(gr, backends, instruction)
            with gr.Column(scale=1):
                error = gr.HTML(visible=False, elem_id="error")
                outputs = _output_column(gr)
        add_image_panel(gr, _image_function(gr, backends), [inputs[0], inputs[2], inputs[3], inputs[4]])
        # One queue for every trigger: a local model scores one request at a time anyway.
        page = {"inputs": inputs, "outputs": [*outputs, error], "concurrency_id": "rerank"}
        button.click(_page_function(gr, rerank), api_visibility="private", **page)
        inputs[0].submit(_page_function(gr, rerank), api_visibility="private", **page)
        # The API: the same ranking, with no trigger in the page; a bad input raises there.
        gr.on([], rerank, inputs=inputs, outputs=outputs, api_name="rerank", concurrency_id="rerank")
    return app


def _backend_factory(
    local_options: Mapping[str, Any] | None, remote_options: Mapping[str, Any] | None
) -> Callable[[str], Reranker]:
    """Builds the reranker for a backend spec: a local model, or vLLM URLs with their options."""
    local = dict(local_options or {})
    remote = dict(remote_options or {})
    remote_model = remote.pop("model", None)
    check_backend_options(local, "local")
    check_backend_options(remote, "remote")

    def make(spec: str) -> Reranker:
        urls = _urls(spec)
        if urls:
            return create_reranker(remote_model, base_url=urls[0] if len(urls) == 1 else urls, **remote)
        return create_reranker(spec, **local)

    return make


def _page_function(gr: Any, rerank: Callable[..., tuple[Any, str, str]]) -> Callable[..., tuple[Any, ...]]:
    """The function behind the page's button: the API's outputs, and the error box.

    After an error every output is cleared, and the reason stays in the error box, in the
    page, until the next run: no chart or timing of an earlier run is left beside it.
    """
    pd = require("pandas", "demo")

    def rank_in_page(*inputs: Any) -> tuple[Any, ...]:
        try:
            table, chart, timing = rerank(*inputs)
        except gr.Error as exc:
            message = html.escape(str(exc.message))
            reason = f'<div class="qr-error" role="alert" style="{_ERROR_STYLE}">{message}</div>'
            empty = pd.DataFrame(columns=TABLE_COLUMNS)
            return empty, "", "", gr.update(value=reason, visible=True)
        return table, chart, timing, gr.update(value="", visible=False)

    return rank_in_page


def _api_function(gr: Any, backends: _Backends) -> Callable[..., tuple[Any, str, str]]:
    """The function behind the `/rerank` API: errors become short messages, raised as `gr.Error`."""

    def rerank(
        query: str,
        documents: str,
        instruction: str | None = None,
        top_n: str | float | None = None,
        backend: str = backends.default,
    ) -> tuple[Any, str, str]:
        """Rank documents (one per line) for a query: the ranked table, the score bars, the timing."""
        with _shown_errors(gr, backend):
            return _rank(backends, query, documents, instruction, top_n, backend)

    return rerank


def _image_function(gr: Any, backends: _Backends) -> Callable[..., tuple[list[Any], str]]:
    """The function behind the image panel and its `/rerank_images` API."""

    def rerank_images(
        query: str,
        files: list[str] | None,
        instruction: str | None = None,
        top_n: str | float | None = None,
        backend: str = backends.default,
    ) -> tuple[list[Any], str]:
        """Rank uploaded images for a query: the gallery, best first, and the timing."""
        with _shown_errors(gr, backend):
            if not query or not query.strip():
                raise _PageError("Enter a query.")
            if not files:
                raise _PageError("Upload at least one image.")
            name = backend or backends.default
            reranker = backends.get(name)
            return rank_images(reranker, name, query, list(files), instruction, _top_n(top_n), _PageError)

    return rerank_images


@contextlib.contextmanager
def _shown_errors(gr: Any, backend: str) -> Iterator[None]:
    """Our errors as short page messages; a server's failure logged for the operator."""
    try:
        yield
    except RemoteError as exc:
        _log.warning("The demo's call to %s failed: %s", backend, exc)
        raise gr.Error(_remote_summary(exc), print_exception=False) from None
    except QwenRerankError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc


def _input_column(gr: Any, backends: _Backends, instruction: str | None) -> tuple[list[Any], Any]:
    """The query, documents, instruction, top_n and backend boxes (in the API's order), and the button."""
    query_box = gr.Textbox(label="Query", value=_EXAMPLE_QUERY, lines=1, elem_id="query")
    instruction_box = gr.Textbox(
        label="Instruction", value=instruction or DEFAULT_INSTRUCTION, lines=2, elem_id="instruction"
    )
    documents_box = gr.Textbox(
        label="Documents, one per line", value=_EXAMPLE_DOCUMENTS, lines=10, max_lines=20, elem_id="documents"
    )
    with gr.Row():
        # A Textbox, not a Number: Gradio's number box shows 0 when empty, and 0 is not "all".
        top_n_box = gr.Textbox(label="top_n (empty: all)", value="", placeholder="all", elem_id="top_n")
        backend_box = gr.Dropdown(
            choices=backends.names,
            value=backends.default,
            label="Backend",
            interactive=len(backends.names) > 1,
            elem_id="backend",
        )
    button = gr.Button("Rerank", variant="primary", elem_id="rerank")
    return [query_box, documents_box, instruction_box, top_n_box, backend_box], button


def _output_column(gr: Any) -> list[Any]:
    """The ranked table, the score bars and the timing line."""
    table = gr.Dataframe(
        headers=TABLE_COLUMNS,
        datatype=["number", "number", "number", "str"],
        label="Ranking",
        interactive=False,
        wrap=True,
        # Shares of the table's width (Gradio's widths take no minimum); with _CSS, rank, index and
        # score stay on one line down to a 400 px window.
        column_widths=["12%", "14%", "19%", "55%"],
        elem_id="ranking",
    )
    chart = gr.HTML(label="Scores", elem_id="scores")
    timing = gr.Textbox(label="Time taken", interactive=False, elem_id="timing")
    return [table, chart, timing]


def launch_demo(app: Any, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    """Serve `app` on `host:port`: no share link, no server-side rendering process.

    With `block=True` it prints the page's URL and serves until interrupted
    (Ctrl+C). With `block=False` it returns once the server is up; stop it
    with `app.close()`.

    Raises:
        OSError: `port` is in use or may not be bound.
    """
    app.launch(
        css=_CSS,
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


def _rank(
    backends: _Backends,
    query: str | None,
    documents: str | None,
    instruction: str | None,
    top_n: str | float | None,
    backend: str | None,
) -> tuple[Any, str, str]:
    pd = require("pandas", "demo")
    if not query or not query.strip():  # the rule of check_query, in the page's words
        raise _PageError("Enter a query.")
    lines = split_lines(documents or "")
    docs = [line for line in lines if line.strip()]
    if not docs:
        raise _PageError("Enter at least one document, one per line.")
    n = _top_n(top_n)
    name = backend or backends.default
    reranker = backends.get(name)
    start = time.perf_counter()
    results = reranker.rerank(query, docs, top_n=n, instruction=chosen_instruction(instruction))
    elapsed = time.perf_counter() - start
    frame = pd.DataFrame(
        [table_row(rank, r) for rank, r in enumerate(results, start=1)], columns=TABLE_COLUMNS
    )
    table = frame.style.format({"score": "{:.4f}"}).hide(axis="index")
    message = f"Scored {count_of(len(docs), 'document')} in {elapsed:.3f} s with {name}."
    if len(results) < len(docs):
        message += f" Showing the top {len(results)}."
    skipped = len(lines) - len(docs)
    if skipped:
        message += f" Skipped {count_of(skipped, 'blank line')}."
    cut = sum(r.truncated for r in results)
    if cut:
        message += (
            f" {count_of(cut, 'document')} shown lost {'its' if cut == 1 else 'their'} end to max_length."
        )
    chunked = sum(r.span is not None for r in results)
    if chunked:
        its = "its" if chunked == 1 else "their"
        message += f" {count_of(chunked, 'long document')} scored by {its} best window."
    return table, score_bars(results, len(docs)), message


def _remote_summary(exc: RemoteError) -> str:
    """One short line for the page, with no server response body in it."""
    if isinstance(exc, APIStatusError):
        return f"The vLLM server answered HTTP {exc.status_code}. The server log has the details."
    if isinstance(exc, RemoteTimeoutError):
        return "The vLLM server did not answer in time."
    if isinstance(exc, RemoteConnectionError):
        return "The vLLM server could not be reached."
    if isinstance(exc, MalformedResponseError):
        return "The vLLM server's reply was not a valid rerank response."
    return "The call to the vLLM server failed."


def _top_n(value: str | float | None) -> int | None:
    """The page's `top_n` under the one rule of `_validation.check_top_n`: empty keeps all.

    The box sends text; an API client may send a number. A whole number in
    either form counts as that int (`"3"`, `3.0`); anything else goes to the
    rule as it came, and is refused there.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            return check_top_n(text, unset="empty")
    if isinstance(value, float) and value.is_integer():
        return check_top_n(int(value), unset="empty")
    return check_top_n(value, unset="empty")


def _page_names(specs: Sequence[str]) -> list[str]:
    """How each backend is named in the page: URLs without their user:password part, made unique."""
    names: list[str] = []
    for spec in specs:
        urls = _urls(spec)
        name = ", ".join(display_url(url) for url in urls) if urls else spec
        base, k = name, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names


def _urls(backend: str) -> list[str]:
    parts = [part.strip() for part in backend.split(",")]
    if parts and all(part.startswith(("http://", "https://")) for part in parts):
        return parts
    return []
