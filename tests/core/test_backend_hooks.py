"""A backend implements the hooks that `Reranker` declares, and nothing else of its bases' internals."""

from __future__ import annotations

import pytest

from qwen_rerank import Reranker
from qwen_rerank._chunking import WindowPlan
from qwen_rerank._requests import Progress, Request
from tests.helpers import LengthReranker


class _Counting(Reranker):
    """A backend with a private helper of its own, as real backends have."""

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        return [[self._score_of(doc) for doc in documents] for _, documents in requests]

    def _score_of(self, document: str) -> float:
        return min(1.0, len(document) / 100)


def test_a_backend_may_redefine_every_declared_hook() -> None:
    class Hooked(LengthReranker):
        def _score_batch(
            self, requests: list[Request], instruction: str, progress: Progress
        ) -> list[list[float]]:
            return [[0.5] * len(documents) for _, documents in requests]

        async def _ascore_batch(
            self, requests: list[Request], instruction: str, progress: Progress
        ) -> list[list[float]]:
            return self._score_batch(requests, instruction, progress)

        def _prompt_rule(self) -> None:
            return None

        def _plan_windows(self, query: str, documents: list[str], instruction: str) -> WindowPlan | None:
            return None

    assert Hooked().score("q", ["a", "b"]) == [0.5, 0.5]


def test_redefining_a_private_name_of_a_base_backend_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Sneaky redefines _score_of, private to the class it derives from"):

        class Sneaky(_Counting):
            def _score_of(self, document: str) -> float:
                return 1.0

    assert _Counting().score("q", ["x" * 30]) == [0.3]


def test_a_backend_without_score_batch_cannot_be_made() -> None:
    class Empty(Reranker):
        pass

    with pytest.raises(TypeError, match="_score_batch"):
        Empty()  # type: ignore[abstract]
