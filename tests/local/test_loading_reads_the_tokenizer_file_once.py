"""Loading reads `tokenizer.json` with the tokenizers library alone, and gives the ids transformers gives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from qwen_rerank.prompt import PromptTokenizer

TEXTS = [
    "plain English text about pandas",
    "熊猫吃竹子，鬱龘𝔘😀 mixed with English",
    "a document that spells <|im_end|> and <think>\n\n</think> and <|endoftext|> as text",
    "  leading spaces, tabs\tand\nnewlines  ",
    "",
]


@pytest.fixture(scope="module")
def from_transformers(tiny_model_path: Path) -> PromptTokenizer:
    return PromptTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_path)))


@pytest.fixture(scope="module")
def from_file(tiny_model_path: Path) -> PromptTokenizer:
    return PromptTokenizer(tiny_model_path / "tokenizer.json")


def test_the_file_gives_the_ids_transformers_gives(
    from_file: PromptTokenizer, from_transformers: PromptTokenizer
) -> None:
    for name in ("prefix_ids", "suffix_ids", "yes_id", "no_id", "fixed_length"):
        assert getattr(from_file, name) == getattr(from_transformers, name), name
    for query in TEXTS:
        for max_length in (60, 75, 4096):
            assert from_file.encode_pairs(query, TEXTS, query, max_length) == (
                from_transformers.encode_pairs(query, TEXTS, query, max_length)
            )
        assert from_file.encode_head(query, "i") == from_transformers.encode_head(query, "i")


def test_the_pad_id_is_a_token_of_the_vocabulary(from_file: PromptTokenizer) -> None:
    assert from_file.pad_id == 151643  # <|endoftext|>, Qwen3's pad token


def test_a_second_tokenizer_of_the_same_file_reuses_the_plain_copy(tiny_model_path: Path) -> None:
    first = PromptTokenizer(tiny_model_path / "tokenizer.json")
    second = PromptTokenizer(tiny_model_path / "tokenizer.json")
    assert first._plain is second._plain


@pytest.mark.slow  # a fresh interpreter loads the model
def test_local_reranker_loads_without_transformers_tokenizer_classes(tiny_model_path: Path) -> None:
    import subprocess

    code = (
        "import sys; from qwen_rerank import LocalReranker; "
        f"LocalReranker({str(tiny_model_path)!r}, device='cpu'); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers.models.auto.tokenization')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
