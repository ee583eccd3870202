"""The loopback look-alikes of the hosted APIs: real HTTP, the providers' shapes, limits and errors.

The requests are built and read with the client's pure functions (qwen_rerank.remote._hosted and
_splitting), so these tests also prove those against servers written apart from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.remote._dialects import DIALECTS
from qwen_rerank.remote._hosted import (
    encode_hosted_body,
    hosted_path,
)
from qwen_rerank.remote._providers import PROVIDERS, find_model
from qwen_rerank.remote._replies import parse_scores, server_message
from qwen_rerank.remote._splitting import RequestLimits, count_tokens, split_request
from qwen_rerank.testing.fake_hosted import FakeHostedServer
from tests.hosted.conftest import KEY, MODELS

URL = "http://127.0.0.1:1/provider"  # only named in messages

QUERY = "what is a panda?"
DOCS = ["A panda is a bear.", "Paris is in France.", "熊猫是一种熊。", "🙂 a bamboo forest"]


def _post(
    server: FakeHostedServer, documents: list[str], *, instruction: str | None = "Find bears", key: str = KEY
) -> httpx.Response:
    provider, model = PROVIDERS[server.api], MODELS[server.api]
    body = encode_hosted_body(provider, model, QUERY, documents, instruction=instruction)
    return _raw(server, body, key=key)


def _raw(server: FakeHostedServer, body: bytes | dict[str, Any], *, key: str | None = KEY) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    url = server.url + hosted_path(PROVIDERS[server.api], MODELS[server.api])
    return httpx.post(url, content=content, headers=headers, timeout=60)


def _scores(server: FakeHostedServer, response: httpx.Response, expected: int) -> list[float]:
    assert response.status_code == 200, response.text
    return parse_scores(response.content, expected, URL, dialect=DIALECTS[server.api]).scores


def test_scores_equal_the_local_model_with_the_same_instruction(
    hosted: FakeHostedServer, tiny_reranker: LocalReranker
) -> None:
    response = _post(hosted, DOCS, instruction="Find bears")
    assert _scores(hosted, response, 4) == pytest.approx(
        tiny_reranker.score(QUERY, DOCS, instruction="Find bears"), abs=1e-5
    )
    usage = parse_scores(response.content, 4, URL, dialect=DIALECTS[hosted.api]).usage
    assert usage.prompt_tokens is not None and usage.prompt_tokens > 0


def test_a_custom_instruction_reaches_the_provider_where_it_reads_it(hosted: FakeHostedServer) -> None:
    one, two = (_scores(hosted, _post(hosted, DOCS, instruction=i), 4) for i in ("Find bears", "Find cities"))
    assert one != two
    body = hosted.requests[-1].body
    field = body["parameters"]["instruct"] if hosted.api == "dashscope" else body["instruction"]
    assert field == "Find cities"


def test_results_in_any_order_map_back_to_the_documents(hosted: FakeHostedServer) -> None:
    plain = _scores(hosted, _post(hosted, DOCS), 4)
    data = _post(hosted, DOCS).json()
    if hosted.api == "deepinfra":  # DeepInfra answers in input order
        assert data["scores"] == plain
    else:  # the others sort by score, highest first
        results = data["output"]["results"] if hosted.api == "dashscope" else data["results"]
        assert [r["relevance_score"] for r in results] == sorted(plain, reverse=True)
        hosted.add_fault("shuffle", times=5)
        for _ in range(5):
            assert _scores(hosted, _post(hosted, DOCS), 4) == plain


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_a_wrong_or_missing_key_gets_the_providers_401(hosted: FakeHostedServer, key: str | None) -> None:
    provider = PROVIDERS[hosted.api]
    response = _raw(
        hosted, encode_hosted_body(provider, MODELS[hosted.api], QUERY, DOCS, instruction=None), key=key
    )
    assert response.status_code == 401
    message = {
        "dashscope": "InvalidApiKey: Invalid API-key provided.",
        "siliconflow": "Invalid token",
        "deepinfra": "User is not authorized to access this resource",
    }[hosted.api]
    assert (server_message(response.content, DIALECTS[provider.name]) or "").startswith(message)
    assert hosted.requests[-1].headers.get("authorization") == (f"Bearer {key}" if key else None)


def test_a_rate_limit_is_a_429_with_retry_after_on_demand_then_it_passes(hosted: FakeHostedServer) -> None:
    hosted.add_fault("rate_limit", retry_after="3")
    hosted.add_fault("rate_limit")
    first, second, third = (_post(hosted, DOCS) for _ in range(3))
    assert (first.status_code, first.headers.get("retry-after")) == (429, "3")
    assert (second.status_code, second.headers.get("retry-after")) == (429, None)
    assert server_message(first.content, DIALECTS[hosted.api])
    assert third.status_code == 200


def test_every_request_is_recorded_with_its_path_headers_and_body(hosted: FakeHostedServer) -> None:
    _post(hosted, DOCS)
    (request,) = hosted.requests
    assert request.path == hosted_path(PROVIDERS[hosted.api], MODELS[hosted.api])
    assert request.headers["content-type"] == "application/json"
    assert json.dumps(request.body, ensure_ascii=False).count("熊猫是一种熊。") == 1


# -- over the limits: answered 400 (or 422) exactly as the provider would -----------------------------
@pytest.fixture
def instant(request: pytest.FixtureRequest) -> Any:
    """A fake server of the provider named by the test's parameter, scoring at once (no model)."""
    with FakeHostedServer(request.param, api_key=KEY) as server:
        yield server


@pytest.mark.parametrize("instant", ["dashscope"], indirect=True)
def test_dashscope_refuses_501_documents_and_30001_tokens_as_dashscope_does(
    instant: FakeHostedServer, qwen3_tokenizer: Any
) -> None:
    over = _post(instant, ["a bear"] * 501)
    assert over.status_code == 400 and over.json()["code"] == "InvalidParameter"
    assert "should not be empty or larger than 500.: input.documents" in over.json()["message"]
    assert _post(instant, ["a bear"] * 500).status_code == 200
    # query tokens x 10 + document tokens: exactly 30,000 passes, one token more does not
    room = 3000 - count_tokens([QUERY], qwen3_tokenizer)[0]
    docs = [" ".join(["bear"] * room)] * 10
    assert count_tokens(docs[:1], qwen3_tokenizer) == [room]
    assert _post(instant, docs).status_code == 200
    too_many = _post(instant, [*docs[:9], docs[9] + " bear"])
    assert too_many.status_code == 400 and "Range of input length should be [1, 30000]" in too_many.text
    assert instant.truncations == []


@pytest.mark.parametrize("instant", ["deepinfra"], indirect=True)
def test_deepinfra_refuses_1025_documents_and_mismatched_queries_with_a_422(
    instant: FakeHostedServer,
) -> None:
    over = _post(instant, ["a bear"] * 1025)
    assert over.status_code == 422
    assert server_message(over.content, DIALECTS["deepinfra"]) == (
        "body.queries: List should have at most 1024 items after validation, not 1025"
    )
    mismatched = _raw(instant, {"queries": ["q", "q"], "documents": ["a", "b", "c"]})
    assert mismatched.status_code == 422 and "number of queries (2) and documents (3)" in mismatched.text
    broadcast = _raw(instant, {"queries": ["q"], "documents": ["a", "b", "c"]})
    assert len(broadcast.json()["scores"]) == 3


@pytest.mark.parametrize("instant", ["siliconflow"], indirect=True)
@pytest.mark.parametrize(
    "extra", [{"instruction": ""}, {"max_chunks_per_doc": 1024}, {"overlap_tokens": 80}, {"model": "BAAI/x"}]
)
def test_siliconflow_refuses_what_its_reference_does_not_allow_for_qwen3(
    instant: FakeHostedServer, extra: dict[str, Any]
) -> None:
    body = {"model": MODELS["siliconflow"], "query": QUERY, "documents": DOCS, **extra}
    response = _raw(instant, body)
    assert response.status_code == 400 and set(response.json()) == {"code", "message", "data"}


@pytest.mark.parametrize("instant", ["siliconflow"], indirect=True)
def test_siliconflow_can_report_usage_in_meta_as_its_newer_reference_shows(instant: FakeHostedServer) -> None:
    with FakeHostedServer("siliconflow", api_key=KEY, usage_shape="meta") as meta:
        tokens = [
            parse_scores(_post(s, DOCS).content, 4, URL, dialect=DIALECTS["siliconflow"]).usage
            for s in (instant, meta)
        ]
    assert tokens[0] == tokens[1] and tokens[0].prompt_tokens


# -- silent truncation, recorded so a client can be proven never to cause it ----------------------------
def test_an_item_over_the_cap_is_cut_silently_and_recorded(
    tiny_model_path: Path, tiny_reranker: LocalReranker, qwen3_tokenizer: Any
) -> None:
    long = " ".join(["bear"] * 4100)
    with FakeHostedServer("dashscope", tiny_model_path, api_key=KEY) as server:
        response = _post(server, ["a bear", long])
        (cut,) = server.truncations
    assert response.status_code == 200 and (cut.request, cut.what, cut.kept) == (0, "document 1", 4000)
    kept = " ".join(["bear"] * 4000)
    assert count_tokens([long], qwen3_tokenizer)[0] == cut.tokens > 4000
    expected = tiny_reranker.score(QUERY, ["a bear", kept], instruction="Find bears")
    assert _scores(server, response, 2) == pytest.approx(expected, abs=1e-5)


# -- split to the limits and merged back --------------------------------------------------------------
@pytest.mark.parametrize("instant", ["dashscope", "deepinfra"], indirect=True)
def test_600_documents_split_within_the_limits_merge_back_in_input_order(instant: FakeHostedServer) -> None:
    docs = [f"document number {i} about bears" for i in range(1300 if instant.api == "deepinfra" else 600)]
    row = find_model(instant.api, MODELS[instant.api])
    assert row is not None
    query_tokens, counts = count_tokens([QUERY])[0], count_tokens(docs)
    merged: list[float] = []
    for start, end in split_request(query_tokens, counts, RequestLimits.of(row)):
        merged += _scores(instant, _post(instant, docs[start:end]), end - start)
    with FakeHostedServer(instant.api, api_key=KEY, max_documents=0, max_request_tokens=0) as unlimited:
        assert merged == _scores(unlimited, _post(unlimited, docs), len(docs))
    assert len(instant.requests) == 2
    assert instant.truncations == []


@pytest.mark.parametrize("instant", ["dashscope"], indirect=True)
def test_40_documents_of_1000_tokens_are_split_so_dashscope_accepts_every_request(
    instant: FakeHostedServer, qwen3_tokenizer: Any
) -> None:
    docs = [" ".join([f"bear{i % 7}"] + ["bear"] * 999) for i in range(40)]
    query_tokens, counts = count_tokens([QUERY], qwen3_tokenizer)[0], count_tokens(docs, qwen3_tokenizer)
    row = find_model("dashscope", "qwen3-rerank")
    assert row is not None
    bounds = split_request(query_tokens, counts, RequestLimits.of(row))
    assert len(bounds) == 2
    for start, end in bounds:
        assert _post(instant, docs[start:end]).status_code == 200
    assert instant.truncations == []
