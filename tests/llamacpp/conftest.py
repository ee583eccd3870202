"""A real llama.cpp llama-server for the session, serving the tiny model as an F32 GGUF.

The server binary is built from the pinned llama-cpp-python sdist into the per-user cache
(`python -m qwen_rerank.testing.llama_server`; `.ci/run` does it before the tests). Without
it, or without what the conversion needs (`sentencepiece`), these tests are skipped on a
developer's machine and fail in CI (`CI` set), as the browser tests do.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.testing.llama_server import (
    LlamaServer,
    build_llama_server,
    built_llama_server,
    convert_to_gguf,
)
from tests.helpers import skip_or_fail

LLAMA_SERVER_TESTS = "the llama-server tests (.ci/run builds the server)"


@pytest.fixture(scope="session")
def llama_binary() -> Path:
    """The built llama-server; CI builds it if the cache has none, a developer's run skips."""
    binary = built_llama_server()
    if binary is None and os.environ.get("CI"):
        try:
            binary = build_llama_server()
        except (QwenRerankError, OSError) as exc:
            skip_or_fail(f"building llama-server failed: {exc}", LLAMA_SERVER_TESTS)
    if binary is None:
        skip_or_fail(
            "llama-server is not built (python -m qwen_rerank.testing.llama_server builds it)",
            LLAMA_SERVER_TESTS,
        )
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model_path: Path, llama_binary: Path) -> Path:
    """The tiny model converted to an F32 GGUF, cached by the checkpoint's hash."""
    return _convert(tiny_model_path, "f32")


def _convert(model: Path, outtype: str, *, as_reranker: bool = True) -> Path:
    if importlib.util.find_spec("sentencepiece") is None:
        skip_or_fail(
            'converting to GGUF needs sentencepiece (pip install "qwen-rerank[dev]")', LLAMA_SERVER_TESTS
        )
    try:
        return convert_to_gguf(model, outtype=outtype, as_reranker=as_reranker)
    except QwenRerankError as exc:
        skip_or_fail(f"converting the tiny model to GGUF failed: {exc}", LLAMA_SERVER_TESTS)


@pytest.fixture(scope="session")
def convert(llama_binary: Path):  # type: ignore[no-untyped-def]
    """`convert(model, outtype, as_reranker=True)`: a cached GGUF of a checkpoint."""
    return _convert


@pytest.fixture(scope="session")
def llama_server(tiny_gguf: Path, llama_binary: Path) -> Iterator[LlamaServer]:
    """One llama-server on the tiny F32 GGUF for the whole session (never stop or kill it)."""
    with LlamaServer(tiny_gguf, binary=llama_binary, threads=1) as server:
        yield server


@pytest.fixture
def start_server(llama_binary: Path) -> Iterator[object]:
    """`start_server(gguf, **options)`: a LlamaServer started now and stopped after the test."""
    started: list[LlamaServer] = []

    def start(gguf: Path, **options: object) -> LlamaServer:
        server = LlamaServer(gguf, binary=llama_binary, **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
