"""With ``trace_content=False`` no query or document text reaches a span or the fallback log line,
whatever the server's error quotes (SGLang echoes documents in its errors)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from qwen_rerank import QwenRerankError, VLLMReranker

QUERY = "what does my biopsy show"
DOCS = ["Patient 4411 has stage II carcinoma.", "Unrelated note about parking."]
TEXTS = [QUERY, *DOCS, "4411", "carcinoma"]


def echo(fake: Any, how: str) -> None:
    """Plant a reply that quotes the query and a document, as an error or as a broken 200."""
    quoted = f"cannot score query {QUERY!r} with document {DOCS[0]!r}"
    if how == "status":
        fake.add_fault("status", status=400, message=quoted)
    elif how == "text":
        fake.add_fault("status", status=500, shape="text", message=quoted)
    else:
        fake.add_fault("json", body={"results": quoted})


def span_text(span: Any) -> str:
    """Everything a span exports: attributes, status, events and their attributes."""
    parts = [repr(dict(span.attributes)), repr(span.status.description)]
    for event in span.events:
        parts += [event.name, repr(dict(event.attributes))]
    return "\n".join(parts)


def assert_no_text(text: str) -> None:
    for secret in TEXTS:
        assert secret not in text, f"{secret!r} leaked"


@pytest.mark.parametrize("how", ["status", "text", "malformed"])
@pytest.mark.parametrize("on_error", ["raise", "passthrough"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_text_in_the_span_or_the_log(
    fake_vllm: Any, spans: Any, caplog: pytest.LogCaptureFixture, how: str, on_error: str, mode: str
) -> None:
    echo(fake_vllm, how)
    caplog.set_level(logging.WARNING, logger="qwen_rerank")
    with VLLMReranker(fake_vllm.url, max_retries=0) as reranker:
        try:
            if mode == "sync":
                reranker.rerank(QUERY, DOCS, on_error=on_error)  # type: ignore[arg-type]
            else:
                await reranker.arerank(QUERY, DOCS, on_error=on_error)  # type: ignore[arg-type]
        except QwenRerankError as exc:
            assert on_error == "raise" and DOCS[0] in str(exc)  # the caller sees what the server said
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] in ("APIStatusError", "MalformedResponseError")
    assert [e.name for e in span.events] == ["exception"]
    assert_no_text(span_text(span))
    assert_no_text(caplog.text)
    if on_error == "passthrough":
        assert "APIStatusError" in caplog.text or "MalformedResponseError" in caplog.text


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_text_in_a_many_queries_span(fake_vllm: Any, spans: Any, mode: str) -> None:
    echo(fake_vllm, "status")
    with VLLMReranker(fake_vllm.url, max_retries=0) as reranker, pytest.raises(QwenRerankError):
        if mode == "sync":
            reranker.score_many([(QUERY, DOCS)])
        else:
            await reranker.ascore_many([(QUERY, DOCS)])
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert_no_text(span_text(span))


def test_with_trace_content_the_span_keeps_the_message(fake_vllm: Any, spans: Any) -> None:
    echo(fake_vllm, "status")
    with VLLMReranker(fake_vllm.url, max_retries=0) as reranker, pytest.raises(QwenRerankError):
        reranker.trace_content = True
        reranker.rerank(QUERY, DOCS)
    (span,) = spans.get_finished_spans()
    assert DOCS[0] in (span.status.description or "")
