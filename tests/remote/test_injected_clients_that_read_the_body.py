"""An injected client whose responses come back already read (httpx's MockTransport, an event hook
that logs the body) works; one that consumed the body without keeping it fails with our error."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from qwen_rerank import RemoteError, VLLMReranker

DOCS = ["short", "a longer document", "the longest document of the three"]


def handler(request: httpx.Request) -> httpx.Response:
    """A test double of a vLLM server: longer documents score higher."""
    body = json.loads(request.content)
    results = [{"index": i, "relevance_score": len(doc) / 100} for i, doc in enumerate(body["documents"])]
    return httpx.Response(200, json={"results": results, "usage": {"prompt_tokens": 7, "total_tokens": 7}})


async def rerank(reranker: VLLMReranker, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return reranker.rerank("q", DOCS, **kwargs)
    return await reranker.arerank("q", DOCS, **kwargs)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_mock_transport_client_works(mode: str) -> None:
    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport) as client:
        async with httpx.AsyncClient(transport=transport) as aclient:
            reranker = VLLMReranker("http://rerank.test", http_client=client, async_http_client=aclient)
            results = await rerank(reranker, mode)
    assert [r.index for r in results] == [2, 1, 0]
    assert results[0].score > results[1].score > results[2].score
    assert reranker.last_usage is not None and reranker.last_usage.prompt_tokens == 7


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_client_whose_hook_reads_the_body_works(fake_vllm: Any, mode: str) -> None:
    logged: list[bytes] = []

    def log(response: httpx.Response) -> None:
        logged.append(response.read())

    async def alog(response: httpx.Response) -> None:
        logged.append(await response.aread())

    with httpx.Client(event_hooks={"response": [log]}) as client:
        async with httpx.AsyncClient(event_hooks={"response": [alog]}) as aclient:
            reranker = VLLMReranker(fake_vllm.url, http_client=client, async_http_client=aclient)
            results = await rerank(reranker, mode)
    assert sorted(r.index for r in results) == [0, 1, 2] and len(logged) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_body_consumed_and_not_kept_is_our_error_and_falls_back(fake_vllm: Any, mode: str) -> None:
    def drain(response: httpx.Response) -> None:
        for _ in response.iter_raw():
            pass

    async def adrain(response: httpx.Response) -> None:
        async for _ in response.aiter_raw():
            pass

    with httpx.Client(event_hooks={"response": [drain]}) as client:
        async with httpx.AsyncClient(event_hooks={"response": [adrain]}) as aclient:
            reranker = VLLMReranker(
                fake_vllm.url, http_client=client, async_http_client=aclient, max_retries=0
            )
            with pytest.raises(RemoteError, match="already consumed"):
                await rerank(reranker, mode)
            results = await rerank(reranker, mode, on_error="passthrough")
    assert [r.index for r in results] == [0, 1, 2] and not any(r.reranked for r in results)
