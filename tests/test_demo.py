"""The Gradio demo, driven over real HTTP by gradio_client with the tiny model."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # gradio_client reads it too

pytest.importorskip("gradio")
from gradio_client import Client
from gradio_client.exceptions import AppError

from qwen_rerank import DEFAULT_INSTRUCTION
from qwen_rerank.demo import TABLE_COLUMNS, build_demo, launch_demo

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "Paris is the capital of France.",
    "Beijing " * 60,  # longer than the preview
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def connect(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def expected_rows(results: list[Any]) -> list[list[Any]]:
    return [[rank, r.index, pytest.approx(r.score, abs=1e-6)] for rank, r in enumerate(results, start=1)]


@pytest.fixture(scope="module")
def outside_requests() -> Iterator[list[str]]:
    """While the module runs, HTTP(S) requests for anywhere but loopback go to a recording proxy."""
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    with pytest.MonkeyPatch.context() as env:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.setenv(name, url)
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        env.setenv("no_proxy", "127.0.0.1,localhost")
        yield _RecordingProxy.seen
    proxy.shutdown()


@pytest.fixture(scope="module")
def demo_url(tiny_model_path: Path, tiny_reranker, outside_requests: list[str]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = build_demo(str(tiny_model_path), reranker=tiny_reranker, local_options={"device": "cpu"})
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(demo_url: str) -> Client:
    return connect(demo_url)


def test_api_takes_query_documents_instruction_top_n_in_that_order(client: Client) -> None:
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/rerank"]
    names = [p["parameter_name"] for p in endpoint["parameters"]]
    assert names[:4] == ["query", "documents", "instruction", "top_n"]
    assert endpoint["parameters"][2]["parameter_default"] == DEFAULT_INSTRUCTION
    assert endpoint["returns"][0]["component"] == "Dataframe"


def test_ranked_table_chart_and_timing_match_the_local_reranker(client: Client, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    text = "\n".join(DOCUMENTS[:2]) + "\n\n   \n" + "\n".join(DOCUMENTS[2:]) + "\n"
    table, chart, timing = client.predict(QUERY, text, api_name="/rerank")
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS)

    assert table["headers"] == TABLE_COLUMNS
    assert [row[:3] for row in table["data"]] == expected_rows(expected)
    previews = {row[1]: row[3] for row in table["data"]}
    assert previews[1] == DOCUMENTS[1]
    assert previews[4].endswith("…") and len(previews[4]) == 160
    assert DOCUMENTS[4].startswith(previews[4][:-1])

    assert [row[0] for row in chart["data"]] == [
        f"{rank}. doc {r.index}" for rank, r in enumerate(expected, 1)
    ]
    assert [row[1] for row in chart["data"]] == pytest.approx([r.score for r in expected], abs=1e-6)
    assert timing.startswith("Scored 5 documents in ")
    assert "Skipped 2 blank lines." in timing


def test_instruction_and_top_n_are_applied(client: Client, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    instruction = "Given a question, retrieve passages that name a city"
    table, _, timing = client.predict(QUERY, "\n".join(DOCUMENTS), instruction, 2, api_name="/rerank")
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS, instruction=instruction, top_n=2)
    assert [row[:3] for row in table["data"]] == expected_rows(expected)
    assert expected_rows(expected) != expected_rows(tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=2))
    assert "Showing the top 2." in timing


def test_another_backend_typed_in_the_page_is_loaded(
    client: Client, tiny_model_path: Path, tiny_reranker
) -> None:  # type: ignore[no-untyped-def]
    other = f"{tiny_model_path}{os.sep}"  # the same checkpoint under another name: a second, new backend
    table, _, timing = client.predict(
        QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, None, other, api_name="/rerank"
    )
    assert [row[:3] for row in table["data"]] == expected_rows(tiny_reranker.rerank(QUERY, DOCUMENTS))
    assert timing.endswith(f"with {other}.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("  ", "a doc"), "Enter a query."),
        ((QUERY, "\n \n"), "Enter at least one document, one per line."),
        (
            (QUERY, "a doc", DEFAULT_INSTRUCTION, 0),
            "top_n must be a whole number of at least 1 (empty shows all)",
        ),
        ((QUERY, "a doc", DEFAULT_INSTRUCTION, None, "  "), "Enter a backend"),
        (
            (QUERY, "a doc", DEFAULT_INSTRUCTION, None, "/no/such/model"),
            "Could not load model '/no/such/model'",
        ),
    ],
)
def test_errors_are_messages_not_tracebacks(client: Client, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/rerank")
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


class _RecordingProxy(BaseHTTPRequestHandler):
    """An HTTP(S) proxy that refuses everything and remembers what it was asked for."""

    seen: ClassVar[list[str]] = []

    def _refuse(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_error(403)

    do_GET = do_POST = do_HEAD = do_CONNECT = _refuse

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_vllm_url_typed_in_the_page_is_used(client: Client, fake_vllm, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    table, _, timing = client.predict(
        QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, 3, fake_vllm.url, api_name="/rerank"
    )
    assert [row[:2] for row in table["data"]] == [
        [rank, r.index] for rank, r in enumerate(tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=3), 1)
    ]
    assert [row[2] for row in table["data"]] == pytest.approx(
        [r.score for r in tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=3)], abs=1e-4
    )
    assert len(fake_vllm.rerank_requests) == 1
    assert f"with {fake_vllm.url}." in timing


def test_nothing_was_requested_beyond_loopback(client: Client, outside_requests: list[str]) -> None:
    # Runs last in this module: building, launching and using the app reached nothing outside.
    client.predict(QUERY, "one\ntwo", api_name="/rerank")
    assert outside_requests == []
