"""VLLMReranker's error statuses, retries, timeouts and malformed replies (against the loopback
fake server misbehaving on purpose)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qwen_rerank import APIStatusError, MalformedResponseError, RemoteConnectionError, RemoteTimeoutError
from tests.helpers import call, close_to
from tests.remote.loopback import DOCS, QUERY

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.mark.parametrize("shape", ["error", "flat", "string", "text"])
def test_error_status_carries_server_message_and_code(fake_vllm, make, shape: str, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=400, shape=shape, message="documents too strange")
    with pytest.raises(APIStatusError) as info:
        call(make(fake_vllm.url), mode, "score", QUERY, DOCS)
    assert info.value.status_code == 400 and info.value.server_message == "documents too strange"
    assert "HTTP 400" in str(info.value) and "documents too strange" in str(info.value)
    assert len(fake_vllm.rerank_requests) == 1  # plain 4xx: no retry


@pytest.mark.parametrize("api", ["vllm", "cohere"])  # SGLang ignores the model name
def test_unknown_model_is_a_404_with_a_hint(fake_vllm, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(APIStatusError, match=r"does not exist.*model=") as info:
        make(fake_vllm.url, model="no-such-model").score(QUERY, DOCS)
    assert info.value.status_code == 404
    assert fake_vllm.rerank_requests[0].body["model"] == "no-such-model"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(fake_vllm, make, tiny_reranker, status: int, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=status, times=2)
    scores = call(make(fake_vllm.url), mode, "score", QUERY, DOCS)
    assert close_to(scores, tiny_reranker.score(QUERY, DOCS))
    assert len(fake_vllm.rerank_requests) == 3


def test_retries_run_out(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=503, times=10, message="overloaded")
    with pytest.raises(APIStatusError, match=r"overloaded.*after 3 attempts") as info:
        call(make(fake_vllm.url, max_retries=2), mode, "score", QUERY, DOCS)
    assert info.value.status_code == 503 and len(fake_vllm.rerank_requests) == 3


def test_retry_after_is_honoured(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=429, retry_after="0.3")
    start = time.monotonic()
    call(make(fake_vllm.url), mode, "score", QUERY, DOCS)
    assert time.monotonic() - start >= 0.3
    fake_vllm.add_fault("status", status=429, retry_after="120")
    start = time.monotonic()
    with pytest.raises(APIStatusError, match="retry after 120 s"):
        call(make(fake_vllm.url, max_retry_wait=5), mode, "score", QUERY, DOCS)
    assert time.monotonic() - start < 5


def test_dropped_connections_are_retried(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("drop", times=2)
    assert close_to(call(make(fake_vllm.url), mode, "score", QUERY, DOCS), tiny_reranker.score(QUERY, DOCS))
    fake_vllm.add_fault("drop", times=5)
    with pytest.raises(RemoteConnectionError, match="broke before a response"):
        call(make(fake_vllm.url, max_retries=1), mode, "score", QUERY, DOCS)


def test_timeout_is_raised_not_retried(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("delay", seconds=1.0)
    with pytest.raises(RemoteTimeoutError, match="did not answer within the timeout"):
        call(make(fake_vllm.url, timeout=0.2), mode, "score", QUERY, DOCS)
    assert len(fake_vllm.rerank_requests) == 1


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("garbage", {}, "HTTP 200 with a body that is not JSON; its first line: '<html>502"),
        ("json", {"body": {"data": []}}, "without a 'results' list|without a bare list"),
        ("json", {"body": [1, 2]}, "without a 'results' list|index None"),
        ("drop_index", {}, "missing indices"),
        ("duplicate_index", {}, "twice"),
        ("bad_index", {}, r"outside range\(6\)"),  # 7 documents, 6 distinct
        ("nan_score", {}, "not a finite number"),
        ("string_score", {}, "not a finite number"),
    ],
)
def test_malformed_responses(fake_vllm, make, kind: str, params: dict[str, Any], match: str, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault(kind, **params)
    with pytest.raises(MalformedResponseError, match=match):
        call(make(fake_vllm.url), mode, "score", QUERY, DOCS)
    assert len(fake_vllm.rerank_requests) == 1


@pytest.mark.parametrize("api", ["vllm", "cohere"])  # the body below is in their shape
def test_scores_outside_unit_interval_are_malformed(fake_vllm, make) -> None:  # type: ignore[no-untyped-def]
    body = {"results": [{"index": 0, "document": {"text": "x"}, "relevance_score": 3.2}]}
    fake_vllm.add_fault("json", body=body)
    with pytest.raises(MalformedResponseError, match=r"outside \[0, 1\].*is_original_qwen3_reranker"):
        make(fake_vllm.url).score(QUERY, ["x"])


def test_results_are_mapped_by_index_not_by_position_or_text(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("wrong_text")
    fake_vllm.add_fault("shuffle")
    reranker = make(fake_vllm.url)
    expected = tiny_reranker.score(QUERY, DOCS)
    assert close_to(call(reranker, mode, "score", QUERY, DOCS), expected)
    assert close_to(call(reranker, mode, "score", QUERY, DOCS), expected)


def test_no_partial_results_when_one_sub_request_fails(fake_vllm, make, mode) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url, max_documents_per_request=2, max_concurrency=1)
    fake_vllm.add_fault("delay", seconds=0.0)
    fake_vllm.add_fault("status", status=400, message="second chunk refused")
    with pytest.raises(APIStatusError, match="second chunk refused"):
        call(reranker, mode, "rerank", QUERY, DOCS)


def test_legacy_usage_shape_is_accepted(fake_vllm, make, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.legacy_usage = True
    assert close_to(make(fake_vllm.url).score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS))
