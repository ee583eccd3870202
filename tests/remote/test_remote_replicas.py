"""VLLMReranker over several replicas: failover, spreading, all down (against loopback fake servers)."""

from __future__ import annotations

import httpx
import pytest

from qwen_rerank import RemoteConnectionError
from qwen_rerank.testing.fake_vllm import FakeVLLMServer
from tests.helpers import call, close_to
from tests.remote.loopback import DOCS, QUERY

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def test_fails_over_from_a_replica_that_is_down(
    fake_vllm, make, closed_port_url, tiny_reranker, mode
) -> None:  # type: ignore[no-untyped-def]
    reranker = make([closed_port_url, fake_vllm.url + "/v1"], max_retries=0)
    expected = tiny_reranker.score(QUERY, DOCS)
    for _ in range(4):
        assert close_to(call(reranker, mode, "score", QUERY, DOCS), expected)
    assert len(fake_vllm.rerank_requests) == 4


def test_requests_spread_over_replicas(make, api) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLMServer(None, api=api) as a, FakeVLLMServer(None, api=api) as b:
        reranker = make([a.url, b.url], max_documents_per_request=2)
        reranker.score(QUERY, DOCS[:4])  # two sub-requests, one per replica
        assert len(a.rerank_requests) == len(b.rerank_requests) == 1
        for _ in range(4):
            reranker.score(QUERY, DOCS[:1])
        assert len(a.rerank_requests) == len(b.rerank_requests) == 3


def test_all_replicas_down_is_a_connection_error(make, closed_port_url, mode) -> None:  # type: ignore[no-untyped-def]
    from qwen_rerank.testing.fake_vllm import closed_port_url as another

    other = another()
    reranker = make([closed_port_url, other], max_retries=2)
    with pytest.raises(RemoteConnectionError) as info:
        call(reranker, mode, "score", QUERY, DOCS)
    message = str(info.value)
    assert closed_port_url.split("//")[1] in message and other.split("//")[1] in message
    assert isinstance(info.value.__cause__, httpx.ConnectError)
