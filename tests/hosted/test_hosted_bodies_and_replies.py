"""The hosted providers' wire formats: request bodies field by field, replies mapped back by index, errors."""

from __future__ import annotations

import itertools
import json

import pytest

from qwen_rerank.exceptions import InvalidInputError, MalformedResponseError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.remote._dialects import DIALECTS
from qwen_rerank.remote._hosted import (
    encode_hosted_body,
    hosted_path,
    read_hosted_usage,
)
from qwen_rerank.remote._providers import MODELS, PROVIDERS, find_model
from qwen_rerank.remote._replies import MAX_SERVER_TEXT, parse_scores, server_message

URL = "http://127.0.0.1:1/provider"  # only named in messages
DOCS = ["A panda is a bear.", "熊猫是一种熊。", "🙂 not a bear"]
QUERY = "what is a panda?"


# -- request bodies, as each API reference spells them -------------------------------------------
def test_dashscope_body_nests_input_and_parameters_with_instruct() -> None:
    body = json.loads(
        encode_hosted_body(PROVIDERS["dashscope"], "qwen3-rerank", QUERY, DOCS, instruction="Find bears")
    )
    assert body == {
        "model": "qwen3-rerank",
        "input": {"query": QUERY, "documents": DOCS},
        "parameters": {"top_n": 3, "return_documents": False, "instruct": "Find bears"},
    }


def test_siliconflow_body_is_flat_with_instruction_and_no_chunking_fields() -> None:
    body = json.loads(
        encode_hosted_body(PROVIDERS["siliconflow"], "Qwen/Qwen3-Reranker-8B", QUERY, DOCS, instruction="I")
    )
    # max_chunks_per_doc and overlap_tokens are for bge and bce models only: never sent.
    assert body == {
        "model": "Qwen/Qwen3-Reranker-8B",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 3,
        "return_documents": False,
        "instruction": "I",
    }


def test_deepinfra_body_pairs_one_query_per_document_and_names_the_model_in_the_path() -> None:
    provider = PROVIDERS["deepinfra"]
    body = json.loads(encode_hosted_body(provider, "Qwen/Qwen3-Reranker-4B", QUERY, DOCS, instruction="I"))
    assert body == {"queries": [QUERY] * 3, "documents": DOCS, "instruction": "I"}
    assert hosted_path(provider, "Qwen/Qwen3-Reranker-4B") == "/v1/inference/Qwen/Qwen3-Reranker-4B"


@pytest.mark.parametrize("api", sorted(PROVIDERS))
def test_the_default_instruction_is_sent_not_left_to_the_provider(api: str) -> None:
    provider = PROVIDERS[api]
    body = encode_hosted_body(provider, "m", QUERY, DOCS, instruction=DEFAULT_INSTRUCTION)
    assert json.dumps(DEFAULT_INSTRUCTION).encode() in body


@pytest.mark.parametrize("api", sorted(PROVIDERS))
def test_text_goes_out_as_utf8_and_no_instruction_means_no_field(api: str) -> None:
    body = encode_hosted_body(PROVIDERS[api], "m", QUERY, DOCS, instruction=None)
    assert "熊猫是一种熊。".encode() in body and "🙂".encode() in body
    assert b"instruct" not in body


def test_siliconflow_refuses_an_empty_instruction_that_its_api_would_reject() -> None:
    with pytest.raises(InvalidInputError, match="empty instruction"):
        encode_hosted_body(PROVIDERS["siliconflow"], "m", QUERY, DOCS, instruction="")
    body = json.loads(encode_hosted_body(PROVIDERS["dashscope"], "m", QUERY, DOCS, instruction=""))
    assert body["parameters"]["instruct"] == ""


def test_the_table_names_a_key_variable_path_and_sources_for_every_provider_and_model() -> None:
    assert {p.key_env for p in PROVIDERS.values()} == {
        "DASHSCOPE_API_KEY",
        "SILICONFLOW_API_KEY",
        "DEEPINFRA_API_KEY",
    }
    for provider in PROVIDERS.values():
        assert provider.default_base_url in provider.regions.values()
        assert provider.default_base_url.startswith("https://") and provider.sources
    for (api, model), row in MODELS.items():
        assert (row.provider, row.model) == (api, model) and api in PROVIDERS and row.sources
        assert find_model(api, model) is row
        assert row.region is None or row.region in PROVIDERS[api].regions
    assert find_model("dashscope", "gte-rerank-v2") is None


# -- replies: any order maps back by index -----------------------------------------------------------
def _reply(api: str, order: list[int], scores: list[float]) -> bytes:
    results = [{"index": i, "relevance_score": scores[i]} for i in order]
    if api == "dashscope":
        data: object = {"output": {"results": results}, "usage": {"total_tokens": 7}, "request_id": "r"}
    elif api == "siliconflow":
        data = {"id": "x", "results": results, "tokens": {"input_tokens": 7, "output_tokens": 0}}
    else:
        data = {"scores": scores, "input_tokens": 7, "request_id": None}
    return json.dumps(data).encode()


@pytest.mark.parametrize("api", sorted(PROVIDERS))
def test_every_result_order_comes_back_in_input_order(api: str) -> None:
    scores = [0.1, 0.9, 0.5, 0.7]
    for order in itertools.permutations(range(4)):
        parsed = parse_scores(_reply(api, list(order), scores), 4, URL, dialect=DIALECTS[api])
        assert parsed.scores == scores
        assert parsed.usage.prompt_tokens == parsed.usage.total_tokens == 7


@pytest.mark.parametrize(
    ("api", "data", "tokens"),
    [
        ("dashscope", {"usage": {"total_tokens": 12}}, 12),
        ("dashscope", {"usage": {"input_tokens": 13}}, 13),  # the SDK's tests
        ("siliconflow", {"tokens": {"input_tokens": 14, "output_tokens": 0}}, 14),
        ("siliconflow", {"meta": {"tokens": {"input_tokens": 15}}}, 15),  # the newer reference
        ("siliconflow", {"meta": {"billed_units": {"input_tokens": 16}}}, 16),
        ("deepinfra", {"input_tokens": 17}, 17),
        ("deepinfra", {"inference_status": {"tokens_input": 18}}, 18),
        ("deepinfra", {"input_tokens": True}, None),
        ("dashscope", {}, None),
    ],
)
def test_usage_is_read_where_each_provider_reports_it(
    api: str, data: dict[str, object], tokens: int | None
) -> None:
    usage = read_hosted_usage(PROVIDERS[api], data)
    assert usage.prompt_tokens == usage.total_tokens == tokens


@pytest.mark.parametrize(
    ("api", "body", "match"),
    [
        ("dashscope", {"results": [{"index": 0, "relevance_score": 0.5}]}, "output.results"),
        ("deepinfra", {"results": []}, "scores list"),
        ("siliconflow", {"results": [{"index": 0, "relevance_score": 0.5}]}, "1 of 2 results"),
        ("siliconflow", {"results": [{"index": 0, "relevance_score": 0.5}] * 2}, "index 0 twice"),
        ("siliconflow", {"results": [{"index": 2, "relevance_score": 0.5}]}, "outside range"),
        ("siliconflow", {"results": [{"index": True, "relevance_score": 0.5}]}, "outside range"),
        ("deepinfra", {"scores": [0.5, float("nan")]}, "not a finite number"),
        ("deepinfra", {"scores": [0.5, 1.5]}, r"outside \[0, 1\]\.$"),
        ("deepinfra", {"scores": [0.5, "0.5"]}, "not a finite number"),
        ("deepinfra", {"scores": [0.5]}, "1 of 2 results"),
    ],
)
def test_a_reply_that_does_not_hold_every_score_once_is_refused(api: str, body: object, match: str) -> None:
    with pytest.raises(MalformedResponseError, match=match):
        parse_scores(json.dumps(body).encode(), 2, URL, dialect=DIALECTS[api])


def test_a_reply_that_is_not_json_is_refused_with_its_first_line() -> None:
    with pytest.raises(MalformedResponseError, match="<html>502"):
        parse_scores(b"\n<html>502 Bad Gateway</html>", 2, URL, dialect=DIALECTS["dashscope"])


# -- error bodies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api", "body", "message"),
    [
        (
            "dashscope",
            b'{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"824f"}',
            "InvalidApiKey: Invalid API-key provided. (request_id 824f)",
        ),
        (
            "dashscope",
            b'{"request_id":"2e5d","code":"InvalidParameter","message":"<400> InternalError.Algo.'
            b"InvalidParameter: Value error, batch size of documents is invalid, it should not be empty "
            b'or larger than 500.: input.documents"}',
            "InvalidParameter: <400> InternalError.Algo.InvalidParameter: Value error, batch size of "
            "documents is invalid, it should not be empty or larger than 500.: input.documents "
            "(request_id 2e5d)",
        ),
        (
            "siliconflow",
            b'{"code":20012,"message":"Model does not exist. Please check it carefully.","data":null}',
            "Model does not exist. Please check it carefully. (code 20012)",
        ),
        ("siliconflow", b'"Invalid token"', "Invalid token"),
        (
            "deepinfra",
            b'{"detail":"User is not authorized to access this resource"}',
            "User is not authorized to access this resource",
        ),
        ("deepinfra", b'{"detail":{"error":"Model is not available"}}', "Model is not available"),
        (
            "deepinfra",
            b'{"detail":[{"type":"too_long","loc":["body","queries"],"msg":"List should have at most 1024 '
            b'items after validation, not 1025"}]}',
            "body.queries: List should have at most 1024 items after validation, not 1025",
        ),
        ("deepinfra", b"upstream connect error\nmore", "upstream connect error"),
        ("dashscope", b"", None),
    ],
)
def test_error_bodies_give_the_providers_message_and_code(api: str, body: bytes, message: str | None) -> None:
    assert server_message(body, DIALECTS[api]) == message


def test_a_long_error_message_is_cut_to_a_quotable_length() -> None:
    body = json.dumps({"code": "X", "message": "m" * 5000, "request_id": "r"}).encode()
    got = server_message(body, DIALECTS["dashscope"])
    assert got is not None and len(got) <= MAX_SERVER_TEXT + len(" [...]") and got.endswith("[...]")
