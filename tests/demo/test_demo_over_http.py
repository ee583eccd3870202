"""The Gradio demo, driven over real HTTP by gradio_client with the tiny model."""

from __future__ import annotations

import os
import re
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
from qwen_rerank.tools.demo import CHART_BARS, TABLE_COLUMNS, build_demo, launch_demo, split_lines
from tests.helpers import connect, expected_rows, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo-over-http")]

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "Gravity is a force that attracts two bodies towards each other.",
    "The capital of China is Beijing.",
    "北京是中华人民共和国的首都。",
    "Paris is the capital of France.",
    "Beijing " * 60,  # longer than the preview
]


def bars(chart: str) -> list[tuple[str, str]]:
    """The (label, value) of each bar in the chart's HTML."""
    labels = re.findall(r'class="qr-bar-label"[^>]*>([^<]*)</span>', chart)
    values = re.findall(r'class="qr-bar-value"[^>]*>([^<]*)</span>', chart)
    return list(zip(labels, values, strict=True))


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

    assert bars(chart) == [
        (f"#{rank} · doc {r.index}", f"{r.score:.4f}") for rank, r in enumerate(expected, 1)
    ]
    assert "All 5 scores" in chart
    assert timing.startswith("Scored 5 documents in ")
    assert "Skipped 2 blank lines." in timing


def test_instruction_and_top_n_are_applied(client: Client, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    instruction = "Given a question, retrieve passages that name a city"
    table, _, timing = client.predict(QUERY, "\n".join(DOCUMENTS), instruction, 2, api_name="/rerank")
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS, instruction=instruction, top_n=2)
    assert [row[:3] for row in table["data"]] == expected_rows(expected)
    assert expected_rows(expected) != expected_rows(tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=2))
    assert "Showing the top 2." in timing


def test_blank_top_n_ranks_every_document(client: Client) -> None:
    table, _, timing = client.predict(
        QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, None, api_name="/rerank"
    )
    assert len(table["data"]) == len(DOCUMENTS)
    assert "Showing the top" not in timing


@pytest.mark.parametrize(
    ("top_n", "shown"), [(1, 1), (2.0, 2), ("3", 3), (" ", 5), ("", 5), (len(DOCUMENTS), 5), (99, 5)]
)
def test_top_n_at_its_edges(client: Client, top_n: str | float, shown: int) -> None:
    table, _, _ = client.predict(QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, top_n, api_name="/rerank")
    assert len(table["data"]) == shown


def test_the_chart_shows_the_top_20_of_60_documents(client: Client, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    documents = [f"Passage {i} about {'Beijing' if i % 3 else 'Paris'} and rivers." for i in range(60)]
    table, chart, timing = client.predict(QUERY, "\n".join(documents), api_name="/rerank")
    expected = tiny_reranker.rerank(QUERY, documents)
    assert len(table["data"]) == 60
    assert bars(chart) == [
        (f"#{rank} · doc {r.index}", f"{r.score:.4f}") for rank, r in enumerate(expected[:CHART_BARS], 1)
    ]
    assert "Top 20 of 60 scores" in chart
    assert timing.startswith("Scored 60 documents in ")


def test_lines_split_on_newline_only_like_wc_l(client: Client, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    text = "page one\fstill page one\r\nsecond\u2028same line\x85too\nthird\n"
    documents = ["page one\fstill page one", "second\u2028same line\x85too", "third"]
    assert split_lines(text) == documents
    table, _, timing = client.predict(QUERY, text, api_name="/rerank")
    assert sorted(row[1] for row in table["data"]) == [0, 1, 2]
    assert [row[:3] for row in table["data"]] == expected_rows(tiny_reranker.rerank(QUERY, documents))
    assert "Skipped" not in timing


REFUSED = ("is not offered by this page", "is not in the list of choices")


@pytest.mark.parametrize("backend", ["/no/such/model", "{tiny}{sep}", "{fake}", "  "])
def test_a_backend_that_was_not_offered_is_refused_before_any_work(
    client: Client, backend: str, tiny_model_path: Path, fake_vllm, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    built: list[Any] = []
    monkeypatch.setattr("qwen_rerank.tools.demo.create_reranker", lambda *a, **k: built.append((a, k)))
    typed = backend.format(tiny=tiny_model_path, sep=os.sep, fake=fake_vllm.url)
    with pytest.raises(AppError) as info:
        client.predict(QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, None, typed, api_name="/rerank")
    assert any(text in str(info.value) for text in REFUSED)
    assert built == []
    assert fake_vllm.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("  ", "a doc"), "Enter a query."),
        ((QUERY, "\n \n"), "Enter at least one document, one per line."),
        (
            (QUERY, "a doc", DEFAULT_INSTRUCTION, 0),
            "top_n must be a positive int or empty, got 0. Leave it empty",
        ),
        ((QUERY, "a doc", DEFAULT_INSTRUCTION, -1), "top_n must be a positive int or empty, got -1."),
        ((QUERY, "a doc", DEFAULT_INSTRUCTION, 2.5), "top_n must be a positive int or empty, got 2.5."),
        ((QUERY, "a doc", DEFAULT_INSTRUCTION, "0"), "top_n must be a positive int or empty, got 0."),
        ((QUERY, "a doc", DEFAULT_INSTRUCTION, "two"), "top_n must be a positive int or empty, got 'two'."),
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


@pytest.fixture(scope="module")
def operator_page(tiny_model_path: Path, tiny_reranker, _fake_vllm_session) -> Iterator[tuple[Client, str]]:  # type: ignore[no-untyped-def]
    """A page whose operator offers a second backend: the fake vLLM server, with a password in its URL."""
    secret_url = _fake_vllm_session.url.replace("http://", "http://operator:s3cr3t-pw@")
    app = build_demo(
        str(tiny_model_path),
        allowed_backends=[secret_url],
        reranker=tiny_reranker,
        remote_options={"api_key": "operator-key-123456"},
    )
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        yield connect(f"http://127.0.0.1:{port}/"), _fake_vllm_session.url
    finally:
        app.close()


def test_an_offered_vllm_backend_is_a_dropdown_choice_without_its_password(
    operator_page: tuple[Client, str], fake_vllm, tiny_reranker
) -> None:  # type: ignore[no-untyped-def]
    client, url = operator_page
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/rerank"]
    backend = endpoint["parameters"][4]
    assert backend["component"] == "Dropdown"
    assert "s3cr3t-pw" not in str(endpoint)
    table, _, timing = client.predict(
        QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, 3, url, api_name="/rerank"
    )
    expected = tiny_reranker.rerank(QUERY, DOCUMENTS, top_n=3)
    assert [row[:2] for row in table["data"]] == [[rank, r.index] for rank, r in enumerate(expected, 1)]
    assert [row[2] for row in table["data"]] == pytest.approx([r.score for r in expected], abs=1e-4)
    assert f"with {url}." in timing and "s3cr3t-pw" not in timing
    assert len(fake_vllm.rerank_requests) == 1  # the operator's URL, the only place its credentials go


def test_a_remote_error_body_is_not_shown_in_the_page(operator_page: tuple[Client, str], fake_vllm) -> None:  # type: ignore[no-untyped-def]
    client, url = operator_page
    fake_vllm.add_fault(
        "status", status=500, message="internal detail: db at 10.0.0.7 password=hunter2", times=10
    )
    with pytest.raises(AppError) as info:
        client.predict(QUERY, "one\ntwo", DEFAULT_INSTRUCTION, None, url, api_name="/rerank")
    message = str(info.value)
    assert "HTTP 500" in message
    assert "10.0.0.7" not in message and "hunter2" not in message and "internal detail" not in message


def test_nothing_was_requested_beyond_loopback(client: Client, outside_requests: list[str]) -> None:
    # Runs last in this module: building, launching and using the app reached nothing outside.
    client.predict(QUERY, "one\ntwo", api_name="/rerank")
    assert outside_requests == []


@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("truncate", "1 document shown lost its end to max_length."),
        ("chunk", "1 long document scored by its best window."),
    ],
)
def test_timing_says_what_was_cut(tiny_model_path: Path, mode: str, note: str) -> None:
    from qwen_rerank import LocalReranker

    reranker = LocalReranker(str(tiny_model_path), device="cpu", max_length=120, long_documents=mode)
    app = build_demo(str(tiny_model_path), reranker=reranker)
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        long = "Gravity pulls apples down. " * 30 + "Beijing is the capital of China."
        _, _, timing = connect(f"http://127.0.0.1:{port}/").predict(
            QUERY, f"{long}\nParis is in France.", api_name="/rerank"
        )
    finally:
        app.close()
    assert timing.endswith(note)
