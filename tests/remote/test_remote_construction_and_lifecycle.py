"""VLLMReranker's construction and lifecycle: base URLs, settings, injected and lazy clients,
create_reranker, inputs left alone, no torch on the remote path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from qwen_rerank import InvalidInputError, VLLMReranker, create_reranker
from tests.helpers import close_to
from tests.remote.loopback import DOCS, INSTRUCTION, QUERY

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/", "/v1/rerank", "/rerank", "/v2/rerank/"])
def test_base_url_forms_post_to_the_rerank_path(fake_vllm, make, suffix: str, api) -> None:  # type: ignore[no-untyped-def]
    make(fake_vllm.url + suffix).score(QUERY, DOCS[:1])
    default = "/v2/rerank" if api == "cohere" else "/v1/rerank"
    assert fake_vllm.requests[-1].path == (suffix.rstrip("/") if "rerank" in suffix else default)


@pytest.mark.parametrize("suffix", ["/v1/score", "/v1/chat/completions", "/v1/embeddings", "/score/"])
def test_base_url_of_another_endpoint_is_refused(suffix: str) -> None:
    with pytest.raises(InvalidInputError, match=r"not a rerank endpoint.*/v1/rerank, /v2/rerank, /rerank"):
        VLLMReranker("http://h:8000" + suffix)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "localhost:8000"}, "http://"),
        ({"base_url": []}, "non-empty list"),
        ({"base_url": ["http://a:1", 3]}, "base_url must be a URL"),
        ({"base_url": "http://a:1", "template": "jinja"}, "template must be"),
        ({"base_url": "http://a:1", "max_documents_per_request": 0}, "max_documents_per_request"),
        ({"base_url": "http://a:1", "max_concurrency": -1}, "max_concurrency"),
        ({"base_url": "http://a:1", "max_retries": -1}, "max_retries"),
        ({"base_url": "http://a:1", "timeout": 0}, "timeout"),
        ({"base_url": "http://a:1", "model": ""}, "model"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        VLLMReranker(**kwargs)


def test_injected_clients_are_used_and_left_open(fake_vllm, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: seen.append("sync")]})

    async def main() -> list[float]:
        async def hook(request: httpx.Request) -> None:
            seen.append("async")

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as aclient:
            async with VLLMReranker(fake_vllm.url, http_client=client, async_http_client=aclient) as r:
                scores = await r.ascore(QUERY, DOCS)
                assert r.score(QUERY, DOCS) == scores
            assert not aclient.is_closed
            return scores

    scores = asyncio.run(main())
    assert seen == ["async", "sync"] and not client.is_closed
    assert close_to(scores, tiny_reranker.score(QUERY, DOCS))
    client.close()


def test_clients_are_lazy_and_close_is_reentrant(fake_vllm, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    before = fake_vllm.connections
    with VLLMReranker(fake_vllm.url) as reranker:
        assert fake_vllm.connections == before
        reranker.score(QUERY, DOCS)
    reranker.close()
    assert close_to(reranker.score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS))  # reopens
    reranker.close()


def test_create_reranker_builds_a_remote_backend(fake_vllm, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    reranker = create_reranker(base_url=fake_vllm.url, instruction=INSTRUCTION, max_retries=0)
    assert isinstance(reranker, VLLMReranker) and reranker.instruction == INSTRUCTION
    assert close_to(reranker.score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS, instruction=INSTRUCTION))
    reranker.close()


def test_inputs_are_not_mutated(fake_vllm, make) -> None:  # type: ignore[no-untyped-def]
    docs = ["a <|im_end|> b", "c"]
    snapshot = json.dumps(docs)
    results = make(fake_vllm.url).rerank(QUERY, docs)
    assert json.dumps(docs) == snapshot
    assert sorted(r.document for r in results) == sorted(docs)  # results carry the original text


def test_remote_path_imports_no_torch(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys, qwen_rerank\n"
        f"r = qwen_rerank.create_reranker(base_url={fake_vllm.url!r})\n"
        "assert len(r.score('q', ['a', 'b'])) == 2\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
