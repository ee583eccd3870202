"""VLLMReranker's scores equal LocalReranker's, through the client template or the server's, in
every dialect (against the loopback fake server scoring with the tiny model)."""

from __future__ import annotations

import itertools

import pytest

from qwen_rerank import InvalidInputError, VLLMReranker
from qwen_rerank.prompt import SUFFIX
from tests.helpers import call, close_to
from tests.remote.loopback import DOCS, INSTRUCTION, QUERY, SERVED, VLLM_ONLY

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def test_client_template_scores_equal_local(fake_vllm, make, tiny_reranker, mode, api) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    assert close_to(call(reranker, mode, "score", QUERY, DOCS), tiny_reranker.score(QUERY, DOCS))
    custom = call(reranker, mode, "score", QUERY, DOCS, instruction=INSTRUCTION)
    assert close_to(custom, tiny_reranker.score(QUERY, DOCS, instruction=INSTRUCTION))
    body = fake_vllm.rerank_requests[0].body
    assert body["query"].endswith(f"<Query>: {QUERY}\n") and body["documents"][0].endswith(SUFFIX)
    # model=None lets the server use the model it serves; Cohere's API needs one.
    assert body.get("model") == (SERVED if api == "cohere" else None)


def test_rerank_matches_local_order_and_top_n(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    reranker = make(fake_vllm.url)
    expected = {r.index: r.score for r in tiny_reranker.rerank(QUERY, DOCS)}
    got = call(reranker, mode, "rerank", QUERY, DOCS)
    # Same scores as local, by index; sorted by score, ties (the identical documents 0 and 6,
    # scored once) in input order. No assertion depends on how near-equal floats round.
    assert sorted(r.index for r in got) == list(range(len(DOCS)))
    assert all(abs(r.score - expected[r.index]) <= 1e-4 for r in got)
    assert all((a.score, -a.index) > (b.score, -b.index) for a, b in itertools.pairwise(got))
    by_index = {r.index: r.score for r in got}
    assert by_index[0] == by_index[6]
    assert [r.document for r in got] == [DOCS[r.index] for r in got]
    assert len(call(reranker, mode, "rerank", QUERY, DOCS, top_n=2)) == 2
    sent = len(fake_vllm.rerank_requests)
    assert call(reranker, mode, "rerank", QUERY, [], top_n=2) == []
    assert len(fake_vllm.rerank_requests) == sent  # an empty list never reaches the server


@VLLM_ONLY
def test_server_template_sends_raw_text_and_instruction(fake_vllm, make, tiny_reranker, mode) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    reranker = make(fake_vllm.url, template="server", instruction=INSTRUCTION, max_tokens_per_doc=4096)
    scores = call(reranker, mode, "score", QUERY, DOCS)
    assert close_to(scores, tiny_reranker.score(QUERY, DOCS, instruction=INSTRUCTION))
    body = fake_vllm.rerank_requests[0].body
    assert body["query"] == QUERY and body["documents"] == DOCS[:-1]  # the repeated document once
    assert body["instruction"] == INSTRUCTION
    assert body["chat_template_kwargs"] == {"instruction": INSTRUCTION}
    assert body["max_tokens_per_doc"] == 4096


def test_max_tokens_per_doc_needs_server_template(fake_vllm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="template='server'"):
        VLLMReranker(fake_vllm.url, max_tokens_per_doc=128)


def test_server_template_sends_each_dialects_instruction_field(fake_vllm, make, tiny_reranker, api) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.template = True
    expected = tiny_reranker.score(QUERY, DOCS)
    assert close_to(make(fake_vllm.url, template="server").score(QUERY, DOCS), expected)
    body = fake_vllm.rerank_requests[-1].body
    sent = {k for k in body if k not in ("query", "documents")}
    assert (
        sent
        == {
            "vllm": {"instruction", "chat_template_kwargs"},
            "sglang": {"instruct", "return_documents"},
            "cohere": {"model", "top_n"},
        }[api]
    )
    custom = make(fake_vllm.url, template="server", instruction=INSTRUCTION)
    if api == "cohere":  # Cohere's request has no instruction: refused, never dropped
        with pytest.raises(InvalidInputError, match="no instruction field"):
            custom.score(QUERY, DOCS)
    else:
        assert close_to(custom.score(QUERY, DOCS), tiny_reranker.score(QUERY, DOCS, instruction=INSTRUCTION))
