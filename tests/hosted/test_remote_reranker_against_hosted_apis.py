"""RemoteReranker(api=...) end to end against each hosted provider's loopback look-alike.

The fake providers score with the tiny model under the instruction of the request, so the
hosted client's scores are compared with a LocalReranker's on the same model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import (
    APIStatusError,
    InvalidInputError,
    LocalReranker,
    RemoteReranker,
    VLLMReranker,
)
from qwen_rerank.testing.fake_hosted import FakeHostedServer
from tests.hosted.conftest import KEY, MODELS

QUERY = "What is the capital of China?"
DOCS = [
    "Gravity attracts bodies.",
    "The capital of China is Beijing.",
    "Paris is in France.",
    "熊猫是一种熊。",
    "Beijing has been the capital for centuries.",
]
KEY_VARS = {
    "dashscope": "DASHSCOPE_API_KEY",
    "siliconflow": "SILICONFLOW_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
}


@pytest.fixture(scope="module")
def local(tiny_model_path: Path) -> LocalReranker:
    return LocalReranker(str(tiny_model_path), device="cpu", dtype="float32")


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provider's key in its own variable; no other key set."""
    for var in (*KEY_VARS.values(), "DEEPINFRA_TOKEN", "QWEN_RERANK_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for var in KEY_VARS.values():
        monkeypatch.setenv(var, KEY)


def client(server: FakeHostedServer, **options: Any) -> RemoteReranker:
    options.setdefault("retry_backoff", 0.01)
    return RemoteReranker(server.url, api=server.api, model=MODELS[server.api], **options)  # type: ignore[arg-type]


def score(reranker: RemoteReranker, mode: str, *args: Any, **kwargs: Any) -> list[float]:
    if mode == "async":
        return asyncio.run(reranker.ascore(*args, **kwargs))
    return reranker.score(*args, **kwargs)


def documents_sent(server: FakeHostedServer) -> list[int]:
    """How many documents each request carried."""
    key = ("input", "documents") if server.api == "dashscope" else ("documents",)
    counts = []
    for request in server.requests:
        body = request.body
        for part in key:
            body = body[part]
        counts.append(len(body))
    return counts


def instruction_sent(server: FakeHostedServer, number: int = -1) -> Any:
    body = server.requests[number].body
    return body["parameters"]["instruct"] if server.api == "dashscope" else body["instruction"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_scores_come_back_in_input_order_whatever_order_the_provider_answers(
    hosted: FakeHostedServer, local: LocalReranker, keyed: None, mode: str
) -> None:
    hosted.add_fault("shuffle", times=1)
    with client(hosted) as reranker:
        got = score(reranker, mode, QUERY, DOCS)
    assert got == pytest.approx(local.score(QUERY, DOCS), abs=1e-5)
    assert hosted.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert not hosted.truncations


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_custom_instruction_reaches_the_field_the_provider_reads(
    hosted: FakeHostedServer, local: LocalReranker, keyed: None, mode: str
) -> None:
    mine, per_call = "Find the city that is a capital", "Find passages about animals"
    with client(hosted, instruction=mine) as reranker:
        at_construction = score(reranker, mode, QUERY, DOCS)
        assert instruction_sent(hosted) == mine
        called = score(reranker, mode, QUERY, DOCS, instruction=per_call)
        assert instruction_sent(hosted) == per_call
    assert at_construction == pytest.approx(local.score(QUERY, DOCS, instruction=mine), abs=1e-5)
    assert called == pytest.approx(local.score(QUERY, DOCS, instruction=per_call), abs=1e-5)
    assert called != pytest.approx(at_construction, abs=1e-5)


def test_siliconflow_refuses_an_empty_instruction_before_sending(_servers: Any, keyed: None) -> None:
    server = _servers["siliconflow"]
    server.reset()
    with client(server) as reranker, pytest.raises(InvalidInputError, match="empty instruction"):
        reranker.score(QUERY, DOCS, instruction="")
    assert not server.requests


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_600_documents_are_split_to_the_providers_document_limit_and_merged(
    hosted: FakeHostedServer, keyed: None, mode: str
) -> None:
    documents = [f"Note {i}: {'Beijing ' * (i % 7)}is mentioned." for i in range(600)]
    with client(hosted, max_documents_per_request=None) as reranker:
        got = score(reranker, mode, QUERY, documents)
        usage = reranker.last_usage  # the last call in this thread: seen after a sync call only
    limit = hosted.limit("max_documents") or 128  # SiliconFlow gives none: our default
    sizes = documents_sent(hosted)
    assert sum(sizes) == 600 and max(sizes) <= limit and len(sizes) >= -(-600 // limit)
    with client(hosted, max_documents_per_request=600 if hosted.api == "siliconflow" else None) as whole:
        hosted.reset()
        if hosted.api != "dashscope":  # the one request DashScope would refuse
            assert score(whole, mode, QUERY, documents) == pytest.approx(got, abs=1e-6)
    if mode == "sync":
        assert usage is not None and usage.total_tokens and usage.total_tokens > 600  # summed


def test_40_documents_of_1000_tokens_stay_within_dashscopes_tokens_per_request(
    _servers: Any, tiny_model_path: Path, keyed: None
) -> None:
    server = _servers["dashscope"]
    server.reset()
    documents = [f"{i} " + " panda" * 999 for i in range(40)]
    with client(server, tokenizer=str(tiny_model_path)) as reranker:
        scores = reranker.score(QUERY, documents)
    assert len(scores) == 40 and not server.truncations
    assert len(server.requests) >= 2  # 40 x (1,000 + query) tokens is over 30,000
    assert sum(documents_sent(server)) == 40


def test_a_document_over_dashscopes_item_cap_is_refused_without_a_tokenizer(
    _servers: Any, keyed: None
) -> None:
    server = _servers["dashscope"]
    server.reset()
    with client(server) as reranker, pytest.raises(InvalidInputError, match=r"Document 1 .*tokenizer="):
        reranker.score(QUERY, ["short", "word " * 5000])
    assert not server.requests  # never sent for the provider to cut silently


def test_with_a_tokenizer_a_long_document_is_cut_on_the_client_and_reported(
    _servers: Any, tiny_model_path: Path, keyed: None
) -> None:
    server = _servers["dashscope"]
    server.reset()
    with client(server, tokenizer=str(tiny_model_path)) as reranker:
        results = reranker.rerank(QUERY, ["short", " panda" * 5000])
    assert {r.index: r.truncated for r in results} == {0: False, 1: True}
    assert not server.truncations


def test_chunk_mode_scores_windows_that_fit_the_item_cap(
    _servers: Any, tiny_model_path: Path, keyed: None
) -> None:
    server = _servers["dashscope"]
    server.reset()
    long = " ".join(f"word{i}" for i in range(3000)) + " The capital of China is Beijing."
    with client(server, tokenizer=str(tiny_model_path), long_documents="chunk") as reranker:
        (result,) = reranker.rerank(QUERY, [long])
    assert result.span is not None and not result.truncated and not server.truncations
    assert len(server.requests[0].body["input"]["documents"]) > 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_429_is_retried_after_the_wait_it_asks(hosted: FakeHostedServer, keyed: None, mode: str) -> None:
    hosted.add_fault("rate_limit", retry_after="0.3")
    started = time.monotonic()
    with client(hosted) as reranker:
        assert len(score(reranker, mode, QUERY, DOCS)) == len(DOCS)
    assert time.monotonic() - started >= 0.3
    assert len(hosted.requests) == 2


def test_429_past_max_retries_is_our_error_with_the_providers_message(
    hosted: FakeHostedServer, keyed: None
) -> None:
    hosted.add_fault("rate_limit", times=3)
    with client(hosted, max_retries=2) as reranker, pytest.raises(APIStatusError) as info:
        reranker.score(QUERY, DOCS)
    assert info.value.status_code == 429 and "rate limit" in str(info.value).lower()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_wrong_key_is_a_401_naming_the_variable_and_never_the_key(
    hosted: FakeHostedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    wrong = "sk-wrong-secret-4242"
    monkeypatch.setenv(KEY_VARS[hosted.api], wrong)
    caplog.set_level(logging.DEBUG)
    with client(hosted) as reranker, pytest.raises(APIStatusError) as info:
        score(reranker, mode, QUERY, DOCS)
    assert info.value.status_code == 401 and KEY_VARS[hosted.api] in str(info.value)
    assert hosted.requests[0].headers["authorization"] == f"Bearer {wrong}"
    shown = [str(info.value), repr(info.value), repr(reranker), caplog.text, str(info.value.__cause__)]
    assert not any(wrong in text for text in shown)


def test_passthrough_gives_the_documents_back_in_order_on_failure(
    hosted: FakeHostedServer, keyed: None
) -> None:
    hosted.add_fault("status", status=500)
    with client(hosted, max_retries=0) as reranker:
        results = reranker.rerank(QUERY, DOCS, top_n=3, on_error="passthrough")
    assert [r.index for r in results] == [0, 1, 2]
    assert not any(r.reranked for r in results) and results[0].error == "APIStatusError"


def test_the_key_comes_from_the_providers_variable_and_a_missing_one_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in (*KEY_VARS.values(), "DEEPINFRA_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QWEN_RERANK_API_KEY", "own-server-key")  # never sent to a provider
    for api, var in KEY_VARS.items():
        with pytest.raises(InvalidInputError, match=f"set the {var} environment variable") as info:
            RemoteReranker(api=api)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    monkeypatch.setenv("DEEPINFRA_TOKEN", "sk-token-spelling")  # DeepInfra's docs spell it so
    reranker = RemoteReranker(api="deepinfra")
    assert "sk-token-spelling" not in repr(reranker) and "api_key='***'" in repr(reranker)


def test_hosted_defaults_endpoints_regions_and_limits(keyed: None) -> None:
    dashscope = RemoteReranker(api="dashscope")
    assert dashscope.model == "qwen3-rerank"
    assert dashscope.base_urls == ["https://dashscope-intl.aliyuncs.com"]
    assert dashscope.max_documents_per_request == 500 and dashscope.max_length == 4000
    assert dashscope.request_limits is not None and dashscope.request_limits.max_tokens == 30000
    beijing = RemoteReranker(api="dashscope", region="beijing")
    assert beijing.base_urls == ["https://dashscope.aliyuncs.com"]
    with FakeHostedServer("dashscope", api_key=KEY) as server:  # the SDK's base URL, ".../api/v1"
        assert len(RemoteReranker(f"{server.url}/api/v1", api="dashscope").score(QUERY, DOCS)) == 5
    deepinfra = RemoteReranker(api="deepinfra", model="Qwen/Qwen3-Reranker-8B")
    assert deepinfra.max_documents_per_request == 1024
    assert repr(deepinfra).startswith("RemoteReranker(base_url='https://api.deepinfra.com'")
    with pytest.raises(InvalidInputError, match="regions"):
        RemoteReranker(api="dashscope", region="mars")
    with pytest.raises(InvalidInputError, match="at most 4000"):
        RemoteReranker(api="dashscope", max_length=8192)
    with pytest.raises(InvalidInputError, match="template='server'"):
        RemoteReranker(api="siliconflow", template="client")


def test_a_key_never_goes_over_plain_http_beyond_loopback_unless_allowed(keyed: None) -> None:
    with pytest.raises(InvalidInputError, match="plain http"):
        RemoteReranker("http://rerank.example.com", api="dashscope")
    assert RemoteReranker("http://rerank.example.com", api="dashscope", allow_http=True).base_urls
    assert RemoteReranker("http://localhost:9", api="dashscope").base_urls


def test_the_old_name_and_a_server_you_run_still_need_base_url() -> None:
    with pytest.raises(InvalidInputError, match="needs base_url"):
        VLLMReranker()
    assert repr(VLLMReranker("http://127.0.0.1:9")).startswith("VLLMReranker(")


def test_a_price_gives_the_cost_of_the_last_call(hosted: FakeHostedServer, keyed: None) -> None:
    with client(hosted, price_per_million_tokens=0.05) as reranker:
        reranker.score(QUERY, DOCS)
        usage = reranker.last_usage
    assert usage is not None and usage.total_tokens
    assert usage.cost == pytest.approx(usage.total_tokens * 0.05 / 1e6)


def test_create_reranker_takes_a_hosted_api_without_base_url(keyed: None) -> None:
    from qwen_rerank import create_reranker

    reranker = create_reranker(api="siliconflow", region="china")
    assert type(reranker) is RemoteReranker and reranker.model == "Qwen/Qwen3-Reranker-0.6B"
    assert reranker.base_urls == ["https://api.siliconflow.cn"]
    with pytest.raises(InvalidInputError, match="without base_url"):
        create_reranker(api="vllm")  # a server you run still needs its URL
