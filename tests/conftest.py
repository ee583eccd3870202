"""Shared fixtures: one tiny random Qwen3 reranker per test session, with the real tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no PostHog call, no warning when offline
# torch.compile's kernels are compiled in this process, not by a pool of compile workers that two
# test workers on two cores would start and fight over (the cold compile test: 168 s -> 133 s).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

# Files whose module fixtures are costly to make twice (a browser, a Gradio app, a Ray instance,
# an Infinity server, a fresh tiny model, examples and venvs started all at once): under
# `--dist loadgroup` each group stays on one worker. Every other test is handed out on its own, so a
# slow file no longer holds a worker to itself.
ONE_WORKER_FILES = {
    "tests/cli/test_cli_tiny_api_and_top_n.py": "tests/cli/test_cli_tiny_api_and_top_n.py",
    "tests/demo/test_demo_in_chromium.py": "tests/demo/test_demo_in_chromium.py",
    "tests/demo/test_demo_over_http.py": "tests/demo/test_demo_over_http.py",
    "tests/docs/test_docs_site.py": "tests/docs/test_docs_site.py",
    "tests/docs/test_examples_run_offline.py": "tests/docs/test_examples_run_offline.py",
    "tests/docs/test_framework_pages_snippets.py": "tests/docs/test_framework_pages_snippets.py",
    "tests/docs/test_notebook_outputs.py": "tests/docs/test_notebook_outputs.py",
    "tests/docs/test_snippets_in_minimal_installs.py": "tests/docs/test_snippets_in_minimal_installs.py",
    "tests/integrations/test_ray_predictor.py": "tests/integrations/test_ray_predictor.py",
    "tests/remote/test_tei_real_infinity_server.py": "tests/remote/test_tei_real_infinity_server.py",
    # One llama-server for the session: its two files share a worker, so only one is started.
    "tests/llamacpp/test_check_against_llama_server.py": "llama-server",
    "tests/llamacpp/test_llamacpp_dialect_against_llama_server.py": "llama-server",
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = ONE_WORKER_FILES.get(item.path.relative_to(ROOT).as_posix())
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


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
