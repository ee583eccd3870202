"""Real vLLM 0.33 servers on the CPU, serving the tiny model in float32.

vLLM is built once from its sdist into the per-user cache (`python -m
qwen_rerank.testing.vllm_server`, 40-55 minutes on 2 cores). That does not fit beside the rest of
CI, so nobody builds it here: without the build these tests are skipped, in CI too, and `.ci/run`
says so in one line. Servers are few and shared, because each takes 1-2 minutes to start and
about 5 GB of memory: one without a template for the session, one per template file, and short-lived
ones only where a test plants a misconfiguration or kills a replica.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.testing.vllm_server import VLLMServer, built_vllm

SKIP_REASON = (
    "the real-vLLM tests need vLLM built for this CPU "
    "(python -m qwen_rerank.testing.vllm_server builds it once, 40-55 minutes on 2 cores)"
)
MAX_MODEL_LEN = 512


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The Python of the cached vLLM build; the tests skip without one."""
    python = built_vllm()
    if python is None:
        pytest.skip(SKIP_REASON)
    return python


@pytest.fixture(scope="session")
def vllm_model(vllm_python: Path) -> Path:
    """The tiny random reranker with a head_dim vLLM's CPU attention takes (32)."""
    from qwen_rerank.testing import make_tiny_reranker

    return make_tiny_reranker(head_dim=32)


@pytest.fixture(scope="session")
def vllm_local(vllm_model: Path) -> LocalReranker:
    """LocalReranker on the same checkpoint, in float32: the parity oracle."""
    return LocalReranker(str(vllm_model), device="cpu", dtype="float32")


def serve(python: Path, model: Path, **options: Any) -> VLLMServer:
    """A started VLLMServer on ``model`` (float32, --max-model-len 512 unless told)."""
    options.setdefault("max_model_len", MAX_MODEL_LEN)
    return VLLMServer(model, python=python, startup_timeout=600, **options).start()


@contextlib.contextmanager
def served(python: Path, model: Path, **options: Any) -> Iterator[VLLMServer]:
    """`serve` as a context manager: the server is stopped on exit."""
    server = serve(python, model, **options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_plain(vllm_python: Path, vllm_model: Path) -> Iterator[VLLMServer]:
    """vLLM without --chat-template, for template="client" (never stop or kill it)."""
    with served(vllm_python, vllm_model) as server:
        yield server


@pytest.fixture
def start_vllm(vllm_python: Path, vllm_model: Path) -> Iterator[Callable[..., VLLMServer]]:
    """`start_vllm(**options)`: a VLLMServer on the tiny model, started now and stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(served(vllm_python, vllm_model, **options))
