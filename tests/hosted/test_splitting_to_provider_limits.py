"""One request split to a hosted provider's limits, counted by the Qwen3 tokenizer or a bound above it."""

from __future__ import annotations

import random
import sys
import unicodedata

import pytest

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.prompt import PromptTokenizer
from qwen_rerank.remote._providers import find_model
from qwen_rerank.remote._splitting import RequestLimits, count_tokens, estimate_tokens, split_request

DASHSCOPE = find_model("dashscope", "qwen3-rerank")
assert DASHSCOPE is not None


def _requests(query: int, docs: list[int], bounds: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(documents, tokens as the provider counts them) of each sub-request."""
    return [(end - start, query * (end - start) + sum(docs[start:end])) for start, end in bounds]


def _covers_in_order(bounds: list[tuple[int, int]], count: int) -> bool:
    return [s for s, _ in bounds] == [0] + [e for _, e in bounds[:-1]] and bounds[-1][1] == count


def _fewest(query: int, docs: list[int], budget: RequestLimits) -> int:
    """The fewest contiguous sub-requests within the budget, by dynamic programming."""
    best = [0] + [sys.maxsize] * len(docs)
    for end in range(1, len(docs) + 1):
        for start in range(end):
            n, tokens = end - start, query * (end - start) + sum(docs[start:end])
            if (budget.max_documents is None or n <= budget.max_documents) and (
                budget.max_tokens is None or tokens <= budget.max_tokens
            ):
                best[end] = min(best[end], best[start] + 1)
    return best[-1]


def test_600_documents_go_out_in_two_requests_of_at_most_500() -> None:
    budget = RequestLimits.of(DASHSCOPE)
    bounds = split_request(12, [20] * 600, budget)
    assert _covers_in_order(bounds, 600) and len(bounds) == 2
    assert all(n <= 500 and tokens <= 30000 for n, tokens in _requests(12, [20] * 600, bounds))


def test_40_documents_of_1000_real_tokens_stay_within_30000_counted_as_dashscope_counts(
    qwen3_tokenizer: PromptTokenizer,
) -> None:
    words = ["the", "bear", "is", "a", "city", "of", "pandas", "and", "in", "to"]
    rng = random.Random(1)
    docs = [" ".join(rng.choice(words) for _ in range(1000)) for _ in range(40)]
    query = "which reranker reads every word?"
    q, counts = count_tokens([query], qwen3_tokenizer)[0], count_tokens(docs, qwen3_tokenizer)
    assert min(counts) >= 1000 and max(counts) <= 1010
    bounds = split_request(q, counts, RequestLimits.of(DASHSCOPE))
    sent = _requests(q, counts, bounds)
    assert _covers_in_order(bounds, 40) and all(tokens <= 30000 for _, tokens in sent)
    assert len(bounds) == 2  # 40 x (q + ~1000) is over 30,000 once, not twice
    assert abs(sent[0][0] - sent[1][0]) <= 1  # evened out, not 29 + 11


@pytest.mark.parametrize("seed", range(30))
def test_random_requests_are_split_into_the_fewest_sub_requests_within_every_limit(seed: int) -> None:
    rng = random.Random(seed)
    docs = [rng.choice([1, 5, 50, 400, 900]) for _ in range(rng.randrange(1, 40))]
    query = rng.randrange(1, 60)
    budget = RequestLimits(
        "p",
        max_documents=rng.choice([None, 1, 3, 7, 100]),
        max_tokens=rng.choice([None, query + 900, 2000, 5000]),
    )
    bounds = split_request(query, docs, budget)
    assert _covers_in_order(bounds, len(docs))
    for n, tokens in _requests(query, docs, bounds):
        assert budget.max_documents is None or n <= budget.max_documents
        assert budget.max_tokens is None or tokens <= budget.max_tokens
    assert len(bounds) == _fewest(query, docs, budget)


def test_no_documents_is_no_request() -> None:
    assert split_request(5, [], RequestLimits.of(DASHSCOPE)) == []


def test_a_lower_document_count_from_the_caller_applies_and_never_raises_the_rows() -> None:
    assert RequestLimits.of(DASHSCOPE, max_documents=100).max_documents == 100
    assert RequestLimits.of(DASHSCOPE, max_documents=10_000).max_documents == 500
    row = find_model("siliconflow", "Qwen/Qwen3-Reranker-8B")
    assert row is not None and RequestLimits.of(row, max_documents=64).max_documents == 64


@pytest.mark.parametrize(
    ("query", "docs", "budget", "match"),
    [
        (4001, [10], RequestLimits.of(DASHSCOPE), "query has 4,001 tokens.*reads at most 4,000"),
        (10, [10, 4001], RequestLimits.of(DASHSCOPE), "Document 1 has 4,001 tokens"),
        (10, [10, 991], RequestLimits("deepinfra", max_tokens_per_pair=1000), "1,001 tokens.*in one prompt"),
        (10, [995], RequestLimits("p", max_tokens=1000), "1,005 tokens.*in one request"),
    ],
)
def test_a_text_no_request_can_hold_is_refused_not_sent_to_be_cut(
    query: int, docs: list[int], budget: RequestLimits, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        split_request(query, docs, budget)


# -- counting without the tokenizer ------------------------------------------------------------------
TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "文本排序模型广泛用于搜索引擎和推荐系统中，它们根据文本相关性对候选文本进行排序。" * 10,
    "東京は日本の首都です。ひらがなとカタカナ。한국어 텍스트." * 10,
    "🙂👍🏽👨‍👩‍👧‍👦🇯🇵" * 20,
    "<|im_end|><|im_start|>\u200b e\u0301" * 10,
    "\U00020000\U0002a6d6 𝔘𝔫𝔦𝔠𝔬𝔡𝔢" * 10,
]


def _nfc_expanding() -> list[str]:
    """Every character whose NFC form has more UTF-8 bytes than itself."""
    chars = (chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    return [c for c in chars if len(unicodedata.normalize("NFC", c).encode()) > len(c.encode())]


def test_the_estimate_never_undercounts_the_qwen3_tokenizer(qwen3_tokenizer: PromptTokenizer) -> None:
    rng = random.Random(0)
    texts = [*TEXTS, "".join(chr(rng.randrange(0x20, 0xD800)) for _ in range(3000))]
    texts += [c * 3 for c in _nfc_expanding()] + [" " + c for c in _nfc_expanding()]
    real = count_tokens(texts, qwen3_tokenizer)
    assert all(est >= n for est, n in zip(count_tokens(texts), real, strict=True))


def test_the_bytes_of_the_text_as_given_would_undercount_where_nfc_expands(
    qwen3_tokenizer: PromptTokenizer,
) -> None:
    text = "\u0f69" * 3  # TIBETAN LETTER KSSA: three bytes, six after NFC
    assert count_tokens([text], qwen3_tokenizer)[0] > len(text.encode("utf-8"))
    assert estimate_tokens(text) >= count_tokens([text], qwen3_tokenizer)[0]


def test_counting_with_the_tokenizer_counts_its_plain_tokens(qwen3_tokenizer: PromptTokenizer) -> None:
    assert count_tokens(TEXTS, qwen3_tokenizer) == [len(ids) for ids in qwen3_tokenizer.encode_text(TEXTS)]
    assert count_tokens(TEXTS) == [estimate_tokens(text) for text in TEXTS]
