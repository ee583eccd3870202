"""Fixtures of the remote wing's tests: the wire format (``api``) and rerankers that speak it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qwen_rerank import VLLMReranker
from tests.remote.loopback import SERVED


@pytest.fixture(params=["vllm", "sglang", "cohere"])
def api(request: pytest.FixtureRequest) -> str:
    """The wire format: the fake server (when the test uses it) and the rerankers speak it."""
    if "fake_vllm" in request.fixturenames:
        request.getfixturevalue("fake_vllm").api = request.param
    return str(request.param)


@pytest.fixture
def make(api: str) -> Iterator[Callable[..., VLLMReranker]]:
    """Build VLLMRerankers speaking ``api``, with millisecond backoff; all are closed after the test."""
    made: list[VLLMReranker] = []

    def build(base_url: Any, **options: Any) -> VLLMReranker:
        options.setdefault("retry_backoff", 0.001)
        options.setdefault("api", api)
        if api == "cohere":
            options.setdefault("model", SERVED)
        reranker = VLLMReranker(base_url, **options)
        made.append(reranker)
        return reranker

    yield build
    for reranker in made:
        reranker.close()
