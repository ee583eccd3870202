"""Two real vLLM replicas; one is killed mid-run and the calls go on on the other."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from qwen_rerank import LocalReranker, VLLMReranker
from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.helpers import CJK_DOCS, DOCS, QUERY, TOL, close

pytestmark = [
    pytest.mark.external,
    pytest.mark.xdist_group("vllm"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
]


def test_killing_a_replica_mid_run_loses_no_call(
    vllm_plain: VLLMServer, start_vllm: Callable[..., VLLMServer], vllm_local: LocalReranker
) -> None:
    doomed = start_vllm()
    docs = DOCS + CJK_DOCS
    expected = vllm_local.score(QUERY, docs)
    results: list[list[float]] = []
    killed = threading.Event()
    with VLLMReranker([doomed.url, vllm_plain.url], max_documents_per_request=2, max_retries=2) as reranker:
        for call in range(30):
            if call == 10:
                threading.Thread(target=lambda: (doomed.kill(), killed.set())).start()
            results.append(reranker.score(QUERY, docs))
        assert killed.wait(60)
        for _ in range(5):  # after the kill every sub-request lands on the survivor
            results.append(reranker.score(QUERY, docs))
    assert doomed.process is not None and doomed.process.poll() is not None
    for scores in results:
        assert close(scores, expected) < TOL
