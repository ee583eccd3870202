"""Attacks on the remote backend, each through a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qwen_rerank import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    QwenRerankError,
    RemoteConnectionError,
    RemoteTimeoutError,
    VLLMReranker,
)
from tests.helpers import call

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

QUERY = "what is a giant panda?"
DOCS = ["The giant panda is a bear.", "Paris is the capital of France.", "Bamboo grows fast."]
KEY = "sk-live-7Hq2ZpX9wLmN4vR8tY6uK3bJ5cD1fG0e"
PASSWORD = "pa55-w0rd-Zq8xK2mV7"


@pytest.fixture
def make() -> Iterator[Callable[..., VLLMReranker]]:
    made: list[VLLMReranker] = []

    def build(base_url: Any, **options: Any) -> VLLMReranker:
        options.setdefault("retry_backoff", 0.001)
        made.append(VLLMReranker(base_url, **options))
        return made[-1]

    yield build
    for reranker in made:
        reranker.close()


def fragments(secret: str, n: int = 6) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def assert_hidden(secret: str, *texts: str) -> None:
    for text in texts:
        leaked = [f for f in fragments(secret) if f in text]
        assert not leaked, f"fragments {leaked[:3]} of the secret in: {text[:300]!r}"


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Every log record of every logger at DEBUG, as formatted by a root handler."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


# -- every call has a deadline ----------------------------------------------------------------
def test_timeout_bounds_a_trickled_body(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("trickle", size=4096, chunk=1, interval=0.05, times=5)
    reranker = make(fake_vllm.url, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError, match="whole attempt"):
        call(reranker, mode, "score", QUERY, DOCS)
    assert time.monotonic() - started < 2.5
    assert len(fake_vllm.rerank_requests) == 1  # a timeout is not retried


def test_deadline_bounds_retries_and_backoff(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=503, times=1000)
    reranker = make(fake_vllm.url, max_retries=50, retry_backoff=0.2, deadline=0.6)
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError, match="deadline") as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value.__cause__, APIStatusError)


def test_default_deadline_is_the_worst_case_of_timeout_and_retries() -> None:
    reranker = VLLMReranker(["http://h:1", "http://h:2"], timeout=10, max_retries=3, max_retry_wait=30)
    assert reranker.timeout == 10 and reranker.deadline == (3 + 2) * 10 + 3 * 30
    assert VLLMReranker("http://h", deadline=None).deadline is None
    with pytest.raises(InvalidInputError, match="deadline"):
        VLLMReranker("http://h", deadline=0)


def test_a_body_that_breaks_is_reported_as_such_not_retried(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("break_body", times=5)
    reranker = make(fake_vllm.url)
    with pytest.raises(MalformedResponseError, match="HTTP 200 arrived, then the body broke off after"):
        call(reranker, mode, "score", QUERY, DOCS)
    assert len(fake_vllm.rerank_requests) == 1


# -- a hostile server cannot hurt the client --------------------------------------------------------
def test_a_gzip_bomb_is_stopped_at_the_cap(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("gzip_bomb", size=200 << 20)
    reranker = make(fake_vllm.url)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedResponseError, match="larger than"):
            call(reranker, mode, "score", QUERY, DOCS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # the 200 MB it inflates to are never held


def test_a_huge_body_is_stopped_at_the_cap(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("huge", size=64 << 20)
    with pytest.raises(MalformedResponseError, match="larger than"):
        call(make(fake_vllm.url), mode, "score", QUERY, DOCS)


def test_max_response_bytes_sets_the_cap(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedResponseError, match="larger than 100 bytes"):
        call(make(fake_vllm.url, max_response_bytes=100), mode, "score", QUERY, DOCS)
    scores = call(make(fake_vllm.url, max_response_bytes=1 << 20), mode, "score", QUERY, DOCS)
    assert all(abs(a - b) < 1e-4 for a, b in zip(scores, tiny_reranker.score(QUERY, DOCS), strict=True))


def test_deeply_nested_json_is_malformed_not_a_recursion_error(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("deep_json", depth=100_000)  # 200 kB: under the cap set here
    with pytest.raises(MalformedResponseError, match="nested too deeply"):
        call(make(fake_vllm.url, max_response_bytes=1 << 20), mode, "score", QUERY, DOCS)


# -- secrets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["sk-abc\ndef-123456", "sk-abc déf-123456", "sk-abc\r\n", "sk abc 123456"])
def test_an_api_key_that_cannot_be_a_header_is_refused_unquoted(key: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="api_key holds") as info:
        VLLMReranker("http://h", api_key=key)
    assert_hidden(key.strip(), str(info.value), repr(info.value))
    monkeypatch.setenv("QWEN_RERANK_API_KEY", key)
    with pytest.raises(InvalidInputError, match="api_key holds"):
        VLLMReranker("http://h")


def test_no_fragment_of_the_key_survives_a_truncated_echo(fake_vllm, make, mode, all_logs) -> None:  # type: ignore[no-untyped-def]
    # The server's plain-text message is cut at 500 characters: in the middle of the key.
    fake_vllm.add_fault("status", status=400, shape="text", message="x" * 488 + f" key={KEY} end")
    reranker = make(fake_vllm.url, api_key=KEY)
    with pytest.raises(APIStatusError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert_hidden(KEY, str(info.value), repr(info.value), str(info.value.server_message), repr(reranker))
    assert_hidden(KEY, *all_logs)


def test_no_fragment_of_the_key_in_any_log_line_at_debug(fake_vllm, make, mode, all_logs) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("echo_headers")  # the key comes back in a response header, which httpcore logs
    fake_vllm.add_fault("echo_auth")
    reranker = make(fake_vllm.url, api_key=KEY)
    assert len(call(reranker, mode, "score", QUERY, DOCS)) == 3
    with pytest.raises(APIStatusError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert fake_vllm.rerank_requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert any(line.startswith("receive_response_headers") or "response_headers" in line for line in all_logs)
    assert_hidden(KEY, str(info.value), *all_logs)


def test_url_credentials_become_basic_auth_and_stay_private(fake_vllm, make, mode, all_logs) -> None:  # type: ignore[no-untyped-def]
    url = fake_vllm.url.replace("http://", f"http://alice:{PASSWORD}@")
    reranker = make(url)
    assert len(call(reranker, mode, "score", QUERY, DOCS)) == 3
    sent = fake_vllm.rerank_requests[0]
    assert sent.headers["authorization"].startswith("Basic ") and "@" not in sent.path
    fake_vllm.add_fault("echo_auth")
    with pytest.raises(APIStatusError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert any("HTTP Request: POST" in line for line in all_logs)  # httpx's INFO line was seen
    token = sent.headers["authorization"].removeprefix("Basic ")
    for secret in (PASSWORD, token):
        assert_hidden(secret, str(info.value), repr(reranker), str(reranker.base_urls), *all_logs)


def test_url_credentials_stay_out_of_connection_errors(closed_port_url, make, mode, all_logs) -> None:  # type: ignore[no-untyped-def]
    url = closed_port_url.replace("http://", f"http://alice:{PASSWORD}@")
    with pytest.raises(RemoteConnectionError) as info:
        call(make(url, max_retries=1), mode, "score", QUERY, DOCS)
    assert_hidden(PASSWORD, str(info.value), repr(info.value), *all_logs)


# -- bad text ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query": "pan\ud83dda"}, r"query holds a lone UTF-16 surrogate \(U\+D83D\) at position 3"),
        ({"documents": ["ok", "b\udc00"]}, r"documents\[1\] holds a lone UTF-16 surrogate .* at position 1"),
        ({"instruction": "\ud800"}, r"instruction holds a lone UTF-16 surrogate .* at position 0"),
    ],
)
def test_lone_surrogates_are_invalid_input_on_every_backend(  # type: ignore[no-untyped-def]
    fake_vllm, make, tiny_reranker, kwargs: dict[str, Any], match: str
) -> None:
    args = {"query": QUERY, "documents": DOCS, **kwargs}
    for reranker in (tiny_reranker, make(fake_vllm.url)):
        with pytest.raises(InvalidInputError, match=match):
            reranker.score(args["query"], args["documents"], instruction=args.get("instruction"))
    assert fake_vllm.rerank_requests == []


# -- lifecycle ---------------------------------------------------------------------------------
LOOPS_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys, threading, warnings
    from qwen_rerank import VLLMReranker

    r = VLLMReranker(sys.argv[1])
    docs = ["a panda", "a city"]
    for _ in range(20):
        asyncio.run(r.ascore("q", docs))

    def own_loop():
        asyncio.run(r.ascore("q", docs))

    threads = [threading.Thread(target=own_loop) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    r.close()
    gc.collect()
    print("loops-ok")
    """
)


def test_many_event_loops_leak_nothing(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    before = fake_vllm.connections
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", LOOPS_SCRIPT, fake_vllm.url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0 and "loops-ok" in run.stdout, run.stderr
    assert "ResourceWarning" not in run.stderr and "unclosed" not in run.stderr, run.stderr
    assert fake_vllm.connections - before == 24  # one connection per loop, each closed with its loop


def test_close_during_a_call_lets_the_call_finish(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url, max_documents_per_request=1)
    fake_vllm.add_fault("delay", seconds=0.4, times=3)
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(reranker.score(QUERY, DOCS))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.15)
    reranker.close()
    worker.join()
    result = outcome[0]
    assert not isinstance(result, BaseException) or isinstance(result, QwenRerankError), repr(result)
    expected = tiny_reranker.score(QUERY, DOCS)
    assert all(abs(a - b) < 1e-4 for a, b in zip(reranker.score(QUERY, DOCS), expected, strict=True))


def test_close_from_another_thread_during_an_async_call(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    fake_vllm.add_fault("delay", seconds=0.4)
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(asyncio.run(reranker.ascore(QUERY, DOCS)))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.15)
    reranker.close()
    worker.join()
    assert not isinstance(outcome[0], BaseException) or isinstance(outcome[0], QwenRerankError)
    assert len(asyncio.run(reranker.ascore(QUERY, DOCS))) == 3


# -- ties --------------------------------------------------------------------------------------
def test_identical_documents_are_scored_once_and_tie_exactly(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    docs = ["b doc", "a doc", "b doc", "c doc", "a doc"]
    for reranker in (tiny_reranker, make(fake_vllm.url)):
        scores = call(reranker, mode, "score", QUERY, docs)
        assert scores[0] == scores[2] and scores[1] == scores[4]
        ranked = call(reranker, mode, "rerank", QUERY, docs)
        position = {r.index: k for k, r in enumerate(ranked)}
        assert position[0] < position[2] and position[1] < position[4]  # ties keep input order
    assert [len(r.body["documents"]) for r in fake_vllm.rerank_requests] == [3, 3]
