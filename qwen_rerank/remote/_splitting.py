"""One hosted request split to a provider's limits: token counts, and sub-request ranges.

- `count_tokens`: the Qwen3 tokens of each text, with the tokenizer when there is one,
  else `estimate_tokens`, a bound that never undercounts.
- [`RequestLimits`][qwen_rerank.remote._splitting.RequestLimits]: what one request may
  hold (documents, documents holding an image or a video, tokens per request, tokens per
  item and per pair).
- `split_request`: the ``[start, end)`` ranges of the fewest sub-requests within a
  budget, of near-equal sizes, in document order; a text that no request can hold is
  refused, never sent for the provider to truncate.

All of it is pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote._providers import HostedModel

__all__ = ["RequestLimits", "TokenCounter", "count_tokens", "estimate_tokens", "split_request"]


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
class RequestLimits:
    """What one request to a hosted model may hold; ``None``: no limit of that kind.

    `RemoteReranker.request_limits` holds the limits of its provider's model, and every
    call is split into requests within them.

    Attributes:
        provider: The hosted API (``"dashscope"``, ...).
        max_documents: Documents per request.
        max_tokens: Tokens per request, counted as the provider counts them: the query
            once per document, plus every document (``query_per_document``). Only text is
            counted: the tokens of an image or a video are the provider's to count.
        max_tokens_per_item: Tokens of the query, and of each document, on its own.
        max_tokens_per_pair: Tokens of one scored prompt (the model's context).
        max_image_documents: Documents holding an image, per request.
        max_video_documents: Documents holding a video, per request.
    """

    provider: str
    max_documents: int | None = None
    max_tokens: int | None = None
    max_tokens_per_item: int | None = None
    max_tokens_per_pair: int | None = None
    max_image_documents: int | None = None  # documents holding an image
    max_video_documents: int | None = None  # documents holding a video

    @classmethod
    def of(cls, model: HostedModel, max_documents: int | None = None) -> RequestLimits:
        """The budget of ``model``'s row; ``max_documents`` lowers the row's document count."""
        documents = model.max_documents_per_request
        if max_documents is not None:
            documents = max_documents if documents is None else min(documents, max_documents)
        media = model.media
        return cls(
            model.provider,
            documents,
            model.max_tokens_per_request,
            model.max_tokens_per_item,
            model.max_tokens_per_pair,
            None if media is None else media.max_image_documents,
            None if media is None else media.max_video_documents,
        )


@dataclass(frozen=True)
class _Caps:
    """The per-request caps `_greedy` fills to, and which documents count against the media caps."""

    docs: int
    tokens: int | None
    images: Sequence[bool]
    videos: Sequence[bool]
    max_images: int | None
    max_videos: int | None


def split_request(
    query_tokens: int,
    document_tokens: Sequence[int],
    budget: RequestLimits,
    *,
    estimated: bool = False,
    images: Sequence[bool] | None = None,
    videos: Sequence[bool] | None = None,
) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of the fewest sub-requests that keep every one within ``budget``.

    Ranges cover the documents in order, with near-equal loads. ``query_tokens`` should
    count everything the provider reads once per document beside it (the instruction,
    when it may count it). ``images`` and ``videos`` say which documents hold an image
    or a video, for the budget's caps on those. Raises
    [`InvalidInputError`][qwen_rerank.InvalidInputError] when the query, or one
    document with the query, is over a limit on its own: a provider would truncate it
    silently, or refuse it. ``estimated``: the counts are `estimate_tokens` bounds, and
    the message says how to count exactly.
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
    none = [False] * len(document_tokens)
    caps = _Caps(
        budget.max_documents or len(document_tokens),
        budget.max_tokens,
        none if images is None else images,
        none if videos is None else videos,
        budget.max_image_documents,
        budget.max_video_documents,
    )
    count = len(_greedy(query_tokens, document_tokens, caps))
    # As few requests, but evened out: the lowest document count, then token cap, that still needs no more.
    even = dataclasses.replace(caps, docs=min(caps.docs, -(-len(document_tokens) // count)))
    if len(_greedy(query_tokens, document_tokens, even)) == count:
        caps = even
    cap = caps.tokens
    if cap is not None:
        low = max(query_tokens + t for t in document_tokens)
        while low < cap:
            mid = (low + cap) // 2
            if len(_greedy(query_tokens, document_tokens, dataclasses.replace(caps, tokens=mid))) == count:
                cap = mid
            else:
                low = mid + 1
    return _greedy(query_tokens, document_tokens, dataclasses.replace(caps, tokens=cap))


def _greedy(query_tokens: int, document_tokens: Sequence[int], caps: _Caps) -> list[tuple[int, int]]:
    """Fill each sub-request in order until the next document would not fit (the fewest ranges)."""
    bounds: list[tuple[int, int]] = []
    start, load, images, videos = 0, 0, 0, 0
    for i, tokens in enumerate(document_tokens):
        cost = query_tokens + tokens
        image, video = caps.images[i], caps.videos[i]
        full = (
            i - start >= caps.docs
            or (caps.tokens is not None and load + cost > caps.tokens)
            or (image and caps.max_images is not None and images >= caps.max_images)
            or (video and caps.max_videos is not None and videos >= caps.max_videos)
        )
        if i > start and full:
            bounds.append((start, i))
            start, load, images, videos = i, 0, 0, 0
        load, images, videos = load + cost, images + image, videos + video
    bounds.append((start, len(document_tokens)))
    return bounds


def _check_items(query_tokens: int, document_tokens: Sequence[int], budget: RequestLimits) -> None:
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
