"""A backend implements the hooks that `Reranker` declares, and nothing else of its bases' internals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from qwen_rerank import Reranker
from qwen_rerank._chunking import WindowPlan
from qwen_rerank._requests import Progress, Request
from tests.helpers import LengthReranker


class _Counting(Reranker):
    """A backend with a private helper of its own, as real backends have."""

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        return [[self._score_of(doc) for doc in documents] for _, documents in requests]

    def _score_of(self, document: str) -> float:
        return min(1.0, len(document) / 100)


def test_a_backend_may_redefine_every_declared_hook() -> None:
    class Hooked(LengthReranker):
        def _score_batch(
            self, requests: list[Request], instruction: str, progress: Progress | None
        ) -> list[list[float]]:
            return [[0.5] * len(documents) for _, documents in requests]

        async def _ascore_batch(
            self, requests: list[Request], instruction: str, progress: Progress | None
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


@pytest.mark.parametrize("method", ["score_many", "score_pairs"])
def test_call_scope_wraps_every_batch_of_a_call_and_is_told_its_instructions(method: str) -> None:
    events: list[object] = []

    class Scoped(LengthReranker):
        @contextlib.contextmanager
        def _call_scope(self, instructions: list[str]) -> Iterator[None]:
            events.append(("open", sorted(instructions)))
            yield
            events.append("close")

        def _score_batch(
            self, requests: list[Request], instruction: str, progress: Progress | None
        ) -> list[list[float]]:
            events.append(("batch", instruction))
            return [[0.5] * len(documents) for _, documents in requests]

    reranker = Scoped()
    if method == "score_many":
        reranker.score_many([("q1", ["a"]), ("q2", ["b"])], instructions=["first", "second"])
    else:
        reranker.score_pairs([("q1", "a"), ("q2", "b")], instructions=["first", "second"])
    assert events == [("open", ["first", "second"]), ("batch", "first"), ("batch", "second"), "close"]


def test_a_one_request_call_gives_the_backend_no_progress_to_report() -> None:
    seen: list[object] = []

    class Watching(LengthReranker):
        def _score_batch(
            self, requests: list[Request], instruction: str, progress: Progress | None
        ) -> list[list[float]]:
            seen.append(progress)
            return [[0.5] * len(documents) for _, documents in requests]

    reranker = Watching()
    reranker.score("q", ["a"])
    reranker.rerank("q", ["a"])
    reranker.score_many([("q", ["a"])])
    assert seen[:2] == [None, None] and callable(seen[2])
