"""A prompt too long for the server's context gets the ``tokenizer=`` hint, in vLLM's words or
llama-server's."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_rerank import APIStatusError, VLLMReranker

MESSAGES = {
    "vllm": "This model's maximum context length is 512 tokens. However, you requested 900 tokens.",
    "llamacpp": "request (900 tokens) exceeds the available context size (512 tokens), try increasing it",
    "llamacpp-old": "input (900 tokens) is larger than the max context size (512 tokens). skipping",
}


@pytest.mark.parametrize("server", sorted(MESSAGES))
def test_the_context_error_names_the_tokenizer_fix(fake_vllm: Any, server: str) -> None:
    fake_vllm.add_fault("status", status=400, message=MESSAGES[server])
    api = "vllm" if server == "vllm" else "llamacpp"
    reranker = VLLMReranker(fake_vllm.url + "/v1/rerank", api=api, max_retries=0)
    with reranker, pytest.raises(APIStatusError) as info:
        reranker.score("q", ["a long document"])
    message = str(info.value)
    assert "tokenizer=" in message and "max_length" in message
    if api == "llamacpp":
        assert "-c" in message and "-np" in message
