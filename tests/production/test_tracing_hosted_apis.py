"""A hosted API's call is one span: the provider's token count on it, the key nowhere in it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openinference.semconv.trace import SpanAttributes

from qwen_rerank import RemoteReranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-span-secret-5150"
QUERY = "What is the capital of China?"
DOCS = ["Paris is in France.", "Beijing is the capital of China.", "Bananas are yellow."]


@pytest.fixture(scope="module", params=["dashscope", "siliconflow", "deepinfra"])
def provider(request: pytest.FixtureRequest, tiny_model_path: Path) -> Iterator[FakeHostedServer]:
    with FakeHostedServer(request.param, tiny_model_path, api_key=KEY) as server:
        yield server


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_span_has_the_providers_usage_and_retries_but_never_the_key(
    provider: FakeHostedServer,
    spans: Any,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(f"{provider.api.upper()}_API_KEY", KEY)  # DASHSCOPE_API_KEY...
    provider.reset()
    provider.add_fault("rate_limit", retry_after="0.05")
    caplog.set_level(logging.DEBUG)
    with RemoteReranker(provider.url, api=provider.api, retry_backoff=0.01) as reranker:  # type: ignore[arg-type]
        if mode == "sync":
            reranker.rerank(QUERY, DOCS)
        else:
            await reranker.arerank(QUERY, DOCS)
    # The fake provider scores in this process, with spans of its own: the client's has attempts.
    (attributes,) = [
        dict(s.attributes) for s in spans.get_finished_spans() if "qwen_rerank.attempts" in s.attributes
    ]
    assert attributes[SpanAttributes.LLM_TOKEN_COUNT_PROMPT] > 0
    assert attributes["qwen_rerank.retries"] == 1 and attributes["qwen_rerank.attempts"] == 2
    assert KEY not in repr(attributes) and KEY not in caplog.text
    assert "retry 1/3" in caplog.text  # the 429 was logged, the key scrubbed from it
