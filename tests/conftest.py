"""Shared fixtures: one tiny random Qwen3 reranker per test session, with the real tokenizer."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no PostHog call, no warning when offline
# torch.compile's kernels are compiled in this process, not by a pool of compile workers that two
# test workers on two cores would start and fight over (the cold compile test: 168 s -> 133 s).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

# Markers (registered in pyproject.toml): `external` for a test that needs a real server, a browser,
# Ray or package installs, `slow` for one that takes more than about 5 s; `-m "not external and not
# slow"` is the fast inner loop. A module whose fixtures are costly to make twice (a browser, a Gradio
# app, a Ray instance, a real server, examples and venvs) sets `pytest.mark.xdist_group(NAME)` in its
# `pytestmark`: under `--dist loadgroup` each group stays on one worker, and every other test is handed
# out on its own. Modules that share a costly session fixture share a group name ("llama-server").


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``mode`` runs twice: through the sync and the async API
    (``tests.helpers.call(reranker, mode, "score", ...)`` picks the method)."""
    return str(request.param)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the libraries underneath out of /tmp: the suite leaves it as it found it (.ci/run checks).

    Gradio keeps its uploads and edit history in ``$GRADIO_TEMP_DIR`` (default ``/tmp/gradio``),
    here a folder of this process's, removed at the end. torch makes ``/tmp/torchinductor_USER``
    when it first loads its compiler, which transformers does with every model; here it finds the
    folder qwen-rerank gives compiled kernels anyway (``compile_cache_dir``). Ray's temporary
    folder is the Ray test's own (tests/integrations/test_ray_predictor.py).
    """
    from qwen_rerank._paths import user_cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "torch-compile"))
    if "GRADIO_TEMP_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="qwen-rerank-gradio-")
        os.environ["GRADIO_TEMP_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """A tiny random Qwen3-Reranker checkpoint on disk: never write into it.

    It is the one ``make_tiny_reranker()`` keeps in the per-user cache folder, as the examples and
    docs use it: built once per user (safely when workers race), not once per worker and session.
    """
    from qwen_rerank.testing import make_tiny_reranker

    return make_tiny_reranker()


@pytest.fixture(scope="session")
def tiny_reranker(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    """A LocalReranker on the tiny model, shared by the session: never mutate it."""
    from qwen_rerank import LocalReranker

    return LocalReranker(str(tiny_model_path), device="cpu")


@pytest.fixture(scope="session")
def reference(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    """The model card's reference loop on the tiny model (the parity oracle)."""
    from tests.reference import ModelCardReranker

    return ModelCardReranker(str(tiny_model_path))


@pytest.fixture(scope="session")
def _fake_vllm_session(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    from qwen_rerank.testing.fake_vllm import FakeVLLMServer

    with FakeVLLMServer(str(tiny_model_path)) as server:
        yield server


@pytest.fixture
def fake_vllm(_fake_vllm_session):  # type: ignore[no-untyped-def]
    """A fake vLLM server on loopback scoring with the tiny model (see qwen_rerank/testing/fake_vllm/).

    ``fake_vllm.url`` is its base URL; ``fake_vllm.add_fault(kind, times=..., **params)``
    makes the next rerank requests misbehave; ``fake_vllm.requests`` records what arrived
    (``fake_vllm.rerank_requests`` only the rerank ones). Faults and records are reset
    for each test; ``fake_vllm.template = True`` emulates ``--chat-template qwen3_reranker.jinja``.
    """
    _fake_vllm_session.reset()
    yield _fake_vllm_session
    _fake_vllm_session.reset()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections to it are refused."""
    from qwen_rerank.testing.fake_vllm import closed_port_url

    return closed_port_url()


@pytest.fixture(scope="session")
def _exporter() -> Any:
    """One in-memory exporter on the SDK provider, for every test of this worker.

    The global tracer provider can be set once per process: whichever test sets it first, the
    exporter joins that one (an SDK provider), so the order tests run in never matters.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_exporter: Any) -> Any:
    """The SDK's in-memory exporter, emptied: ``spans.get_finished_spans()`` after the call."""
    _exporter.clear()
    return _exporter
