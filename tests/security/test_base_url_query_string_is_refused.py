"""A base_url with a query string (``?code=KEY``) is refused at once, never dropped nor shown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from qwen_rerank import InvalidInputError, VLLMReranker, create_reranker

KEY = "azfn-Zq8xK2vLw9"


@pytest.mark.parametrize(
    "base_url",
    [
        f"http://127.0.0.1:9?code={KEY}",
        f"http://127.0.0.1:9/v1/rerank?code={KEY}",
        f"http://user:pw@127.0.0.1:9/api?x=1&code={KEY}",
        ["http://127.0.0.1:9", f"http://127.0.0.1:10/?code={KEY}"],
    ],
)
def test_a_query_string_is_refused_without_showing_it(base_url: Any) -> None:
    with pytest.raises(InvalidInputError, match="query string") as info:
        VLLMReranker(base_url)
    message = str(info.value)
    assert KEY[:6] not in message and "code=" not in message
    assert "http_client" in message


def test_the_factory_refuses_it_too() -> None:
    with pytest.raises(InvalidInputError, match="query string"):
        create_reranker(base_url=f"http://127.0.0.1:9?code={KEY}")


def test_a_query_given_to_an_injected_client_reaches_the_server(fake_vllm: Any) -> None:
    # The way the error names: the client's own params go on every request.
    with httpx.Client(params={"code": KEY}) as client, VLLMReranker(fake_vllm.url, http_client=client) as r:
        assert len(r.score("q", ["a", "b"])) == 2
        assert KEY not in repr(r) and KEY not in r.served_model
    assert [r.path for r in fake_vllm.requests if r.method == "POST"] == [f"/v1/rerank?code={KEY}"]
