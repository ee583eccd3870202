"""Fixtures for the production features: planted backend faults, and spans caught in memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import qwen_rerank

# Each fault a backend meets in production, planted on the fake vLLM server (or a closed port).
FAULTS = {
    "refused": "RemoteConnectionError",
    "503": "APIStatusError",
    "hang": "RemoteTimeoutError",
    "malformed": "MalformedResponseError",
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest) -> str:
    """The name of one planted fault (see :func:`plant`)."""
    return str(request.param)


def plant(fault: str, server: Any, closed_url: str) -> tuple[str, dict[str, Any]]:
    """Plant ``fault`` for the next rerank request: the URL to use, and the client settings to use it with.

    No retries and a half-second attempt, so each fault surfaces at once.
    """
    options: dict[str, Any] = {"max_retries": 0, "timeout": 0.5}
    if fault == "refused":
        return closed_url, options
    if fault == "503":
        server.add_fault("status", status=503, times=1)
    elif fault == "hang":
        server.add_fault("delay", seconds=1.5, times=1)
    elif fault == "malformed":
        server.add_fault("garbage", times=1)
    else:
        raise ValueError(fault)
    return server.url, options


@pytest.fixture
def planted(fault: str, fake_vllm: Any, closed_port_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``fault`` planted: ``(url, client settings)``.

    Afterwards it waits for a hung request to finish on the server: one still scoring when the
    interpreter exits would abort it.
    """
    yield plant(fault, fake_vllm, closed_port_url)
    deadline = time.monotonic() + 10
    while fake_vllm.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _fresh_fallback_counts() -> Iterator[None]:
    qwen_rerank.reset_fallback_counts()
    yield
    qwen_rerank.reset_fallback_counts()
