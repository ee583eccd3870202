"""The public API: what each package exports is importable and documented (README or docs/)."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.helpers import ROOT

# The README is a front page; the rest of the user documentation is the MkDocs site in docs/.
DOCS = "\n".join(
    path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
)
PACKAGES = [
    p
    for p in ("qwen_rerank", "langchain_qwen_rerank", "llamaindex_qwen_rerank")
    if importlib.util.find_spec(p)
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_importable_and_documented(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert getattr(module, name) is not None
        assert re.search(rf"\b{name}\b", DOCS), f"{package}.{name} is exported but not documented"


def test_public_names_are_stable() -> None:
    import qwen_rerank

    for name in ("DEFAULT_MODEL", "DEFAULT_INSTRUCTION", "RerankResult", "Reranker", "LocalReranker"):
        assert name in qwen_rerank.__all__
    assert qwen_rerank.DEFAULT_MODEL == "Qwen/Qwen3-Reranker-0.6B"
    assert issubclass(qwen_rerank.InvalidInputError, qwen_rerank.QwenRerankError)
    assert issubclass(qwen_rerank.InvalidInputError, ValueError)
