"""One hosted request split to a provider's limits: token counts, and sub-request ranges.

- `count_tokens`: the Qwen3 tokens of each text, with the tokenizer when there is one,
  else `estimate_tokens`, a bound that never undercounts.
- [`RequestBudget`][qwen_rerank.remote._splitting.RequestBudget]: what one request may
  hold (documents, tokens per request, tokens per item and per pair).
- `split_request`: the ``[start, end)`` ranges of the fewest sub-requests within a
  budget, of near-equal sizes, in document order; a text that no request can hold is
  refused, never sent for the provider to truncate.

All of it is pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote._providers import HostedModel

__all__ = ["RequestBudget", "TokenCounter", "count_tokens", "estimate_tokens", "split_request"]


class TokenCounter(Protocol):
    """Anything that encodes plain text to Qwen3 token ids, as `PromptTokenizer` does."""

    def encode_text(self, texts: Sequence[str]) -> list[list[int]]: ...


def estimate_tokens(text: str) -> int:
    """An upper bound on the Qwen3 tokens of ``text``: the UTF-8 bytes of its NFC form.

    The Qwen3 tokenizer normalizes text to NFC and then applies byte-level BPE, whose
    every token holds at least one byte. The bytes of the text as given are not a bound:
    NFC expands some characters (U+0F69 is one token per byte of its three-byte form,
    six tokens where the text held three bytes). The bound is loose for ordinary text:
    about 4.5 bytes per token in English and 5.5 in Chinese.
    """
    return len(unicodedata.normalize("NFC", text).encode("utf-8"))


def count_tokens(texts: Sequence[str], counter: TokenCounter | None = None) -> list[int]:
    """The tokens of each text: counted by ``counter``, or bounded by `estimate_tokens` without one."""
    if counter is None:
        return [estimate_tokens(text) for text in texts]
    return [len(ids) for ids in counter.encode_text(list(texts))]


@dataclass(frozen=True)
class RequestBudget:
    """What one request to a hosted model may hold; ``None``: no limit of that kind.

    Tokens per request are counted as the provider counts them: the query once per
    document, plus every document (``query_per_document``).
    """

    provider: str
    max_documents: int | None = None
    max_tokens: int | None = None
    max_tokens_per_item: int | None = None
    max_tokens_per_pair: int | None = None

    @classmethod
    def of(cls, model: HostedModel, max_documents: int | None = None) -> RequestBudget:
        """The budget of ``model``'s row; ``max_documents`` lowers the row's document count."""
        documents = model.max_documents_per_request
        if max_documents is not None:
            documents = max_documents if documents is None else min(documents, max_documents)
        return cls(
            model.provider,
            documents,
            model.max_tokens_per_request,
            model.max_tokens_per_item,
            model.max_tokens_per_pair,
        )


def split_request(
    query_tokens: int, document_tokens: Sequence[int], budget: RequestBudget, *, estimated: bool = False
) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of the fewest sub-requests that keep every one within ``budget``.

    Ranges cover the documents in order, with near-equal loads. ``query_tokens`` should
    count everything the provider reads once per document beside it (the instruction,
    when it may count it). Raises [`InvalidInputError`][qwen_rerank.InvalidInputError]
    when the query, or one document with the query, is over a limit on its own: a
    provider would truncate it silently, or refuse it. ``estimated``: the counts are
    `estimate_tokens` bounds, and the message says how to count exactly.
    """
    try:
        _check_items(query_tokens, document_tokens, budget)
    except InvalidInputError as exc:
        if not estimated:
            raise
        raise InvalidInputError(
            f"{exc} (Tokens were bounded by UTF-8 bytes, which overcounts about 4x; pass tokenizer= "
            "with the model's hub id or folder to count them exactly and cut long documents on the client.)"
        ) from None
    if not document_tokens:
        return []
    docs = budget.max_documents or len(document_tokens)
    cap = budget.max_tokens
    count = len(_greedy(query_tokens, document_tokens, docs, cap))
    # As few requests, but evened out: the lowest document count, then token cap, that still needs no more.
    even = min(docs, -(-len(document_tokens) // count))
    if len(_greedy(query_tokens, document_tokens, even, cap)) == count:
        docs = even
    if cap is not None:
        low = max(query_tokens + t for t in document_tokens)
        while low < cap:
            mid = (low + cap) // 2
            if len(_greedy(query_tokens, document_tokens, docs, mid)) == count:
                cap = mid
            else:
                low = mid + 1
    return _greedy(query_tokens, document_tokens, docs, cap)


def _greedy(
    query_tokens: int, document_tokens: Sequence[int], docs: int, cap: int | None
) -> list[tuple[int, int]]:
    """Fill each sub-request in order until the next document would not fit (the fewest ranges)."""
    bounds: list[tuple[int, int]] = []
    start, load = 0, 0
    for i, tokens in enumerate(document_tokens):
        cost = query_tokens + tokens
        if i > start and (i - start >= docs or (cap is not None and load + cost > cap)):
            bounds.append((start, i))
            start, load = i, 0
        load += cost
    bounds.append((start, len(document_tokens)))
    return bounds


def _check_items(query_tokens: int, document_tokens: Sequence[int], budget: RequestBudget) -> None:
    who = f"api={budget.provider!r}"
    item = budget.max_tokens_per_item
    if item is not None and query_tokens > item:
        raise InvalidInputError(
            f"The query has {query_tokens:,} tokens; {who} reads at most {item:,} tokens of a query and "
            "would cut the rest without saying so. Shorten the query."
        )
    for i, tokens in enumerate(document_tokens):
        if item is not None and tokens > item:
            raise InvalidInputError(
                f"Document {i} has {tokens:,} tokens; {who} reads at most {item:,} tokens of a document and "
                "would cut the rest without saying so. Pass tokenizer= to cut it on the client (reported as "
                "truncated), or long_documents='chunk' to score it in windows."
            )
        for limit, what in (
            (budget.max_tokens_per_pair, "in one prompt"),
            (budget.max_tokens, "in one request"),
        ):
            if limit is not None and query_tokens + tokens > limit:
                raise InvalidInputError(
                    f"Document {i} with the query takes {query_tokens + tokens:,} tokens; {who} takes at "
                    f"most {limit:,} {what}. Shorten the query, or chunk or cut the document."
                )
