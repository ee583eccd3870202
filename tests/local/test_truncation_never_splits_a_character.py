"""A token budget that ends inside a multi-byte character: local and remote cut the same tokens.

The byte-level tokenizer spells some characters (rare CJK characters,
emoji, mathematical letters) with two or three tokens. A cut between them
would keep part of a character locally, which the text a remote client
sends cannot hold. Both paths drop the whole character instead, by the one
rule of [`char_boundary`][qwen_rerank.prompt.char_boundary].
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from qwen_rerank import LocalReranker, VLLMReranker
from qwen_rerank.prompt import PromptTokenizer, char_boundary, format_body, format_prompt

QUERY = "Which animals live in the mountains?"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
# Characters of three and four bytes that this tokenizer splits into several tokens.
SPLIT = "鬱龘𝔘𝔫😀🤖"
DOCUMENTS = [f"Pandas{' ' * (k % 3)} live in {SPLIT[k % len(SPLIT)] * 40} bamboo" for k in range(12)]


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(tiny_model_path))


@pytest.fixture(scope="module")
def prompt_tokenizer(hf_tokenizer) -> PromptTokenizer:  # type: ignore[no-untyped-def]
    return PromptTokenizer(hf_tokenizer)


def _mid_character(pt: PromptTokenizer, document: str, max_length: int) -> bool:
    """Whether the plain budget for ``document`` ends inside one of its characters."""
    [(ids, offsets)] = pt.encode_offsets([format_body(QUERY, document, INSTRUCTION)])
    budget = max_length - pt.fixed_length
    return budget < len(ids) and char_boundary(offsets, budget) < budget


def test_char_boundary_drops_only_a_split_character() -> None:
    # "a", then one character in three tokens, then "b": offsets as the byte-level tokenizer gives them.
    offsets = [(0, 1), (1, 2), (1, 2), (1, 2), (2, 3)]
    assert [char_boundary(offsets, keep) for keep in range(6)] == [0, 1, 1, 1, 4, 5]


@pytest.mark.parametrize("extra", range(0, 12))
def test_local_ids_are_what_the_remote_client_sends(
    prompt_tokenizer: PromptTokenizer,
    hf_tokenizer,  # type: ignore[no-untyped-def]
    extra: int,
) -> None:
    pt = prompt_tokenizer
    max_length = pt.fixed_length + len(pt.encode_text([format_body(QUERY, "", INSTRUCTION)])[0]) + 9 + extra
    local = pt.encode_pairs(QUERY, DOCUMENTS, INSTRUCTION, max_length)
    query_text, document_texts = pt.split_pairs(QUERY, DOCUMENTS, INSTRUCTION, max_length)
    cut = pt.truncate_documents(QUERY, DOCUMENTS, INSTRUCTION, max_length)
    for k, ids in enumerate(local):
        # The server tokenizes the text it gets with the full tokenizer (control tokens included).
        assert ids == hf_tokenizer.encode(query_text + document_texts[k], add_special_tokens=False)
        assert ids == hf_tokenizer.encode(format_prompt(QUERY, cut[k], INSTRUCTION), add_special_tokens=False)
        assert len(ids) <= max_length
        assert "\ufffd" not in hf_tokenizer.decode(ids[len(pt.prefix_ids) :])


def test_the_cases_above_do_cut_inside_characters(prompt_tokenizer: PromptTokenizer) -> None:
    pt = prompt_tokenizer
    base = pt.fixed_length + len(pt.encode_text([format_body(QUERY, "", INSTRUCTION)])[0]) + 9
    cases = [(doc, base + extra) for doc in DOCUMENTS for extra in range(12)]
    assert sum(_mid_character(pt, doc, length) for doc, length in cases) >= 40


def test_local_and_remote_scores_agree_when_the_cut_falls_inside_a_character(
    fake_vllm,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_path: Path,
    prompt_tokenizer: PromptTokenizer,
) -> None:
    pt = prompt_tokenizer
    max_length = pt.fixed_length + len(pt.encode_text([format_body(QUERY, "", INSTRUCTION)])[0]) + 14
    assert any(_mid_character(pt, doc, max_length) for doc in DOCUMENTS)
    monkeypatch.setattr(fake_vllm, "max_model_len", max_length)
    local = LocalReranker(str(tiny_model_path), device="cpu", max_length=max_length)
    with VLLMReranker(fake_vllm.url, tokenizer=str(tiny_model_path), max_length=max_length) as remote:
        theirs = remote.score(QUERY, DOCUMENTS, instruction=INSTRUCTION)
    ours = local.score(QUERY, DOCUMENTS, instruction=INSTRUCTION)
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-5
