"""qwen3-vl-rerank's 8,000-token item cap: text alone is cut on the client with tokenizer=, text beside
an image is refused by index; either way the provider never cuts a text without saying so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import InvalidInputError, RemoteReranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-vl-long"
IMAGE_URL = "https://img.example/a.png"
LONG = " panda" * 9000  # about 9,000 tokens, over the 8,000 cap


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key=KEY) as running:
        yield running


def _client(server: FakeHostedServer, **options: Any) -> RemoteReranker:
    server.reset()
    return RemoteReranker(server.url, api="dashscope", model="qwen3-vl-rerank", api_key=KEY, **options)


def test_with_a_tokenizer_a_long_text_document_is_cut_and_reported(
    server: FakeHostedServer, tiny_model_path: Path
) -> None:
    with _client(server, tokenizer=str(tiny_model_path)) as reranker:
        results = reranker.rerank("pandas", ["short", LONG])
    assert {r.index: r.truncated for r in results} == {0: False, 1: True}
    sent = server.requests[0].body["input"]["documents"]
    assert sent[0] == {"text": "short"} and 0 < len(sent[1]["text"]) < len(LONG)
    assert not server.truncations


@pytest.mark.parametrize("tokenizer", [False, True])
def test_a_long_text_beside_an_image_is_refused_by_index(
    server: FakeHostedServer, tiny_model_path: Path, tokenizer: bool
) -> None:
    options = {"tokenizer": str(tiny_model_path)} if tokenizer else {}
    with (
        _client(server, **options) as reranker,
        pytest.raises(InvalidInputError, match=r"documents\[1\]'s text has .* at most 8,000 tokens") as info,
    ):
        reranker.score("pandas", [{"image": IMAGE_URL}, {"image": IMAGE_URL, "text": LONG}])
    assert ("UTF-8 bytes" in str(info.value)) is not tokenizer
    assert not server.requests


def test_without_a_tokenizer_a_long_text_alone_is_refused_before_sending(server: FakeHostedServer) -> None:
    with _client(server) as reranker, pytest.raises(InvalidInputError, match=r"Document 1 .*tokenizer="):
        reranker.score("pandas", ["short", LONG])
    assert not server.requests
