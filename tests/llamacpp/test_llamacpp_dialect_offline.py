"""The llamacpp dialect's rules, checked without a server (they hold before anything is sent)."""

from __future__ import annotations

import json

import pytest

from qwen_rerank import DEFAULT_INSTRUCTION, InvalidInputError, VLLMReranker, create_reranker
from qwen_rerank.remote._dialects import DIALECTS, break_placeholders, encode_body

URL = "http://127.0.0.1:9"  # nothing is sent in these tests


def test_the_body_carries_only_query_and_documents() -> None:
    body = json.loads(
        encode_body(DIALECTS["llamacpp"], "q", ["a", "b"], "some-model", instruction=DEFAULT_INSTRUCTION)
    )
    assert body == {"query": "q", "documents": ["a", "b"]}


def test_template_defaults_to_server_and_client_is_refused() -> None:
    with VLLMReranker(URL, api="llamacpp") as reranker:
        assert reranker.template == "server" and reranker.api == "llamacpp"
        assert "api='llamacpp'" in repr(reranker)
    with VLLMReranker(URL) as reranker:
        assert reranker.template == "client"  # other dialects keep theirs
    with pytest.raises(InvalidInputError, match="wrap each prompt twice"):
        VLLMReranker(URL, api="llamacpp", template="client")


@pytest.mark.parametrize("instruction", ["Find recipes", DEFAULT_INSTRUCTION + " "])
def test_any_instruction_but_the_ggufs_is_refused_up_front(instruction: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        create_reranker(base_url=URL, api="llamacpp", instruction=instruction)
    message = str(info.value)
    assert "fixed instruction" in message and "LocalReranker" in message and "SGLang" in message
    with VLLMReranker(URL, api="llamacpp", max_retries=0) as reranker, pytest.raises(InvalidInputError):
        reranker.score("q", ["d"], instruction=instruction)


def test_document_placeholders_in_a_query_are_broken_for_llamacpp_only() -> None:
    query = "a {document} and {query}"
    assert break_placeholders(DIALECTS["llamacpp"], query) == "a {\u200bdocument} and {query}"
    assert break_placeholders(DIALECTS["vllm"], query) is query
