"""on_error="passthrough" in the core: a backend failure gives back retrieval order, marked and counted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import qwen_rerank
from qwen_rerank import (
    InvalidInputError,
    OutOfMemoryError,
    QwenRerankError,
    Reranker,
    RerankResult,
    VLLMReranker,
)
from qwen_rerank._requests import Progress, Request
from tests.production.conftest import FAULTS, plant

QUERY = "What is the capital of China?"
DOCS = ["Paris is in France.", "Beijing is the capital of China.", "Bananas are yellow.", "Rome is old."]


async def call(reranker: Reranker, mode: str, documents: Any = DOCS, **kwargs: Any) -> list[RerankResult]:
    if mode == "sync":
        return reranker.rerank(QUERY, documents, **kwargs)
    return await reranker.arerank(QUERY, documents, **kwargs)


def in_retrieval_order(results: list[RerankResult], error: str, count: int) -> None:
    assert [r.index for r in results] == list(range(count))
    assert [r.document for r in results] == DOCS[:count]
    assert all(not r.reranked and r.error == error and r.score == 0.0 for r in results)


async def test_each_fault_gives_back_retrieval_order(
    planted: tuple[str, dict[str, Any]], fault: str, mode: str
) -> None:
    url, options = planted
    with VLLMReranker(url, **options) as reranker:
        results = await call(reranker, mode, on_error="passthrough")
    in_retrieval_order(results, FAULTS[fault], len(DOCS))
    assert qwen_rerank.fallback_counts() == {FAULTS[fault]: 1}


async def test_raise_is_the_default(planted: tuple[str, dict[str, Any]], fault: str, mode: str) -> None:
    url, options = planted
    with VLLMReranker(url, **options) as reranker, pytest.raises(QwenRerankError) as caught:
        await call(reranker, mode)
    assert type(caught.value).__name__ == FAULTS[fault]
    assert qwen_rerank.fallback_counts() == {}


@pytest.mark.parametrize(("top_n", "count"), [(None, 4), (1, 1), (4, 4), (9, 4)])
async def test_top_n_applies_and_nothing_else_drops(
    fake_vllm: Any, closed_port_url: str, top_n: int | None, count: int
) -> None:
    url, options = plant("refused", fake_vllm, closed_port_url)
    with VLLMReranker(url, **options) as reranker:
        # A threshold no unscored document could pass: passthrough drops nothing for it.
        results = reranker.rerank(QUERY, DOCS, top_n=top_n, score_threshold=0.99, on_error="passthrough")
    in_retrieval_order(results, "RemoteConnectionError", count)


async def test_bad_input_is_still_raised(closed_port_url: str, mode: str) -> None:
    with VLLMReranker(closed_port_url, max_retries=0) as reranker:
        with pytest.raises(InvalidInputError, match=r"documents\[1\]"):
            await call(reranker, mode, ["fine", 3], on_error="passthrough")
        with pytest.raises(InvalidInputError, match="top_n"):
            await call(reranker, mode, top_n=0, on_error="passthrough")
        with pytest.raises(InvalidInputError, match="on_error must be 'raise'"):
            await call(reranker, mode, on_error="ignore")
    assert qwen_rerank.fallback_counts() == {}


async def test_a_working_backend_reranks_as_before(fake_vllm: Any) -> None:
    with VLLMReranker(fake_vllm.url) as reranker:
        plain = reranker.rerank(QUERY, DOCS, top_n=2)
        guarded = reranker.rerank(QUERY, DOCS, top_n=2, on_error="passthrough")
    assert guarded == plain
    assert all(r.reranked and r.error is None for r in guarded)


class _OutOfMemory(Reranker):
    """A backend whose device is always full."""

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        raise OutOfMemoryError("CUDA out of memory even one document at a time.")


async def test_out_of_memory_falls_back(mode: str) -> None:
    results = await call(_OutOfMemory(), mode, top_n=2, on_error="passthrough")
    in_retrieval_order(results, "OutOfMemoryError", 2)


def test_caller_documents_are_left_alone(closed_port_url: str) -> None:
    documents = list(DOCS)
    with VLLMReranker(closed_port_url, max_retries=0) as reranker:
        reranker.rerank(QUERY, documents, on_error="passthrough")
    assert documents == DOCS


def test_one_warning_per_error_kind_per_minute(
    fake_vllm: Any, closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qwen_rerank")
    with VLLMReranker(closed_port_url, max_retries=0) as refused:
        for _ in range(3):
            refused.rerank(QUERY, DOCS, on_error="passthrough")
    with VLLMReranker(fake_vllm.url, max_retries=0) as served:
        fake_vllm.add_fault("garbage", times=2)
        for _ in range(2):
            served.rerank(QUERY, DOCS, on_error="passthrough")
    warnings = [r.getMessage() for r in caplog.records if r.name == "qwen_rerank"]
    assert len(warnings) == 2
    assert "RemoteConnectionError" in warnings[0] and "retrieval order" in warnings[0]
    assert "MalformedResponseError" in warnings[1]
    assert qwen_rerank.fallback_counts() == {"RemoteConnectionError": 3, "MalformedResponseError": 2}


def test_the_warning_repeats_once_the_minute_is_over(
    closed_port_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="qwen_rerank")
    monkeypatch.setattr("qwen_rerank._fallback.WARN_EVERY", 0.0)  # every "minute" is over at once
    with VLLMReranker(closed_port_url, max_retries=0) as refused:
        for _ in range(2):
            refused.rerank(QUERY, DOCS, on_error="passthrough")
    assert len([r for r in caplog.records if r.name == "qwen_rerank"]) == 2


def test_the_warning_and_the_result_hold_no_secret(fake_vllm: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="qwen_rerank")
    url = fake_vllm.url.replace("http://", "http://user:hunter2@")
    fake_vllm.add_fault("echo_auth", times=1)  # the server repeats the Authorization header back
    with VLLMReranker(url, api_key="sk-secret", max_retries=0) as reranker:
        results = reranker.rerank(QUERY, DOCS, on_error="passthrough")
    assert results[0].error == "APIStatusError"
    assert caplog.records, "the fallback was not logged"
    for text in (repr(results), caplog.text):
        assert "hunter2" not in text and "sk-secret" not in text


def test_load_error_in_the_core_is_raised_at_construction(tmp_path: Path) -> None:
    # A core backend that cannot load fails when built, before any call: only the adapters, which
    # build on first use, turn a load error into retrieval order (tested with the frameworks).
    from qwen_rerank import LocalReranker, ModelLoadError

    with pytest.raises(ModelLoadError):
        LocalReranker(str(tmp_path / "no-such-model"), device="cpu")
