"""How `LocalReranker` runs a Qwen3-VL-Reranker: the `VLScorer`, its score cache and progress reports."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch

from qwen_rerank._requests import Progress, Request
from qwen_rerank.local._cache import ScoreCache
from qwen_rerank.local._devices import default_batch_tokens
from qwen_rerank.local._vl import VLScorer
from qwen_rerank.local._work import Tracker
from qwen_rerank.media import Content, ImageSource, MediaLimits, fold_key

__all__ = ["VLEngine"]

_ADDRESSED_BY_CONTENT = frozenset({"bytes", "data_url"})
"""Image sources whose value is the image itself; a path or URL may change under the same name."""


class VLEngine:
    """A loaded Qwen3-VL-Reranker, with the cache of the reranker that owns it.

    Args:
        folder: The checkpoint folder.
        device: Where the model runs.
        dtype: Its dtype.
        max_length: Tokens a prompt keeps before its last 5.
        max_batch_tokens: Padded tokens per forward pass; ``None`` takes the device's default.
        limits: Limits on reading images, and whether URLs are fetched.
        cache: The owner's score cache, or ``None``.
    """

    def __init__(
        self,
        folder: Path,
        *,
        device: torch.device,
        dtype: torch.dtype,
        max_length: int,
        max_batch_tokens: int | None,
        limits: MediaLimits,
        cache: ScoreCache | None,
    ) -> None:
        self.scorer = VLScorer.from_pretrained(folder, device=device, dtype=dtype, limits=limits)
        config: Any = self.scorer.model.config
        width = getattr(getattr(config, "text_config", config), "intermediate_size", 3072)
        self.scorer.max_length = max_length
        self.scorer.max_batch_tokens = max_batch_tokens or default_batch_tokens(device, dtype, width)
        self._cache = cache

    @property
    def model(self) -> Any:
        return self.scorer.model

    @property
    def max_batch_tokens(self) -> int:
        return self.scorer.max_batch_tokens

    def score(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Each request's scores: cached ones looked up (text, bytes and data URLs only), the rest run."""
        keys = [[self._key(query, doc, instruction) for doc in documents] for query, documents in requests]
        known = [self._cached(row) for row in keys]
        missing: list[Request] = [
            (query, [doc for doc, hit in zip(documents, hits, strict=True) if hit is None])
            for (query, documents), hits in zip(requests, known, strict=True)
        ]
        tracker = Tracker(requests, [len(docs) for _, docs in missing], progress)
        computed = self.scorer.score_batch(missing, instruction, tracker.scored)
        out = []
        for hits, fresh, row in zip(known, computed, keys, strict=True):
            values = iter(fresh)
            scores = [hit if hit is not None else next(values) for hit in hits]
            if self._cache is not None:
                self._cache.put_many(
                    [
                        (key, s)
                        for key, s, hit in zip(row, scores, hits, strict=True)
                        if key is not None and hit is None
                    ]
                )
            out.append(scores)
        return out

    def _cached(self, keys: list[Hashable | None]) -> list[float | None]:
        if self._cache is None:
            return [None] * len(keys)
        found = self._cache.get_many([key for key in keys if key is not None])
        hits = iter(found)
        return [None if key is None else next(hits) for key in keys]

    def _key(self, query: Content, document: Content, instruction: str) -> Hashable | None:
        """The cache key of a pair; ``None`` (not cached) when an image of it may change under its name."""
        if self._cache is None or not (_by_content(query) and _by_content(document)):
            return None
        return (self.scorer.max_length, instruction, fold_key(query), fold_key(document))


def _by_content(content: Content) -> bool:
    """Whether ``content`` holds its images itself (text, bytes, data URLs), so a cached score stays true."""
    if isinstance(content, str):
        return True
    images: list[ImageSource] = list(content.images)
    for video in content.videos:
        if video.kind != "frames":
            return False
        images += video.value
    return all(image.kind in _ADDRESSED_BY_CONTENT for image in images)
