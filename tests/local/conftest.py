"""Fixtures of the local wing's tests: LocalRerankers and model card references per setting, built once
per session, and a shuffled document list with duplicates."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import LocalReranker
from tests.local.fast_path import DOCUMENTS
from tests.reference import ModelCardReranker


@pytest.fixture(scope="session")
def make(tiny_model_path: Path) -> Any:
    """LocalReranker on the tiny model for the given settings, built once per session (callers must not
    leave state behind: hooks are removed, no instance here has a cache)."""
    built: dict[tuple[tuple[str, Any], ...], LocalReranker] = {}

    def factory(**kwargs: Any) -> LocalReranker:
        key = tuple(sorted(kwargs.items()))
        if key not in built:
            built[key] = LocalReranker(str(tiny_model_path), device="cpu", **kwargs)
        return built[key]

    return factory


@pytest.fixture(scope="session")
def shuffled() -> list[str]:
    docs = DOCUMENTS * 2 + [f"document number {i} " * (i % 9 + 1) for i in range(12)]
    random.Random(0).shuffle(docs)
    return docs


@pytest.fixture(scope="session")
def truncating_references(tiny_model_path: Path) -> Any:
    """The model card's loop on the tiny model, truncating at the given max_length, built once each."""
    built: dict[int, ModelCardReranker] = {}

    def factory(max_length: int) -> ModelCardReranker:
        if max_length not in built:
            built[max_length] = ModelCardReranker(str(tiny_model_path), max_length=max_length)
        return built[max_length]

    return factory
