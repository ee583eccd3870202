"""VLLMReranker's API key: sent as a bearer token, read from the environment, never leaked."""

from __future__ import annotations

import logging

import pytest

from qwen_rerank import APIStatusError
from tests.helpers import call
from tests.remote.loopback import DOCS, QUERY, SECRET

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def test_api_key_sent_as_bearer_and_read_from_env(fake_vllm, make, monkeypatch, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.api_key = SECRET
    monkeypatch.setenv("QWEN_RERANK_API_KEY", SECRET)
    reranker = make(fake_vllm.url)
    call(reranker, mode, "score", QUERY, DOCS[:2])
    assert fake_vllm.rerank_requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    monkeypatch.delenv("QWEN_RERANK_API_KEY")
    anonymous = make(fake_vllm.url)
    with pytest.raises(APIStatusError) as info:
        call(anonymous, mode, "score", QUERY, DOCS[:2])
    assert (
        info.value.status_code == 401 and "Unauthorized" in str(info.value) and "api_key" in str(info.value)
    )
    assert "authorization" not in fake_vllm.rerank_requests[-1].headers


def test_api_key_never_leaks(fake_vllm, make, caplog: pytest.LogCaptureFixture, mode) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url, api_key=SECRET)
    assert SECRET not in repr(reranker) and SECRET not in str(reranker)
    caplog.set_level(logging.DEBUG)
    fake_vllm.add_fault("status", status=503, times=1)
    fake_vllm.add_fault("echo_auth")
    with pytest.raises(APIStatusError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    assert "Authorization: Bearer ***" in str(info.value) and SECRET not in str(info.value)
    assert SECRET not in (info.value.server_message or "")
    assert fake_vllm.rerank_requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert caplog.records and not any(SECRET in r.getMessage() for r in caplog.records)
