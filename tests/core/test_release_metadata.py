"""What a package index shows, and where it comes from: one version, the license, the changelog.

The built artifacts themselves (their contents, `twine check --strict`, the wheel installed into
fresh venvs) are checked by `.ci/run`, with `.ci/check_dist.py` and `.ci/try_wheel.py`.
"""

from __future__ import annotations

import importlib.metadata
import re

import pytest

import qwen_rerank
from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_the_version_is_written_once() -> None:
    assert "version" not in PROJECT["project"] and "version" in PROJECT["project"]["dynamic"]
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qwen_rerank.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", qwen_rerank.__version__)
    # The installed metadata is built from it (the dev install is this tree, editable).
    assert importlib.metadata.version("qwen-rerank") == qwen_rerank.__version__
    sources = [p for p in ROOT.glob("*_qwen_rerank/*.py")] + list((ROOT / "qwen_rerank").rglob("*.py"))
    written = [p for p in sources if re.search(r"""^__version__ = ["']""", p.read_text(), flags=re.M)]
    assert written == [ROOT / "qwen_rerank" / "__init__.py"]


def test_the_changelog_opens_with_this_version_in_keep_a_changelog_form() -> None:
    assert "keepachangelog.com/en/1.1.0" in CHANGELOG
    versions = re.findall(r"^## \[([^\]]+)\]", CHANGELOG, flags=re.M)
    assert versions and versions[0] == qwen_rerank.__version__, versions
    first = CHANGELOG.split(f"## [{versions[0]}]", 1)[1].split("\n## ", 1)[0]
    assert "### Added" in first
    for section in re.findall(r"^### (.+)$", CHANGELOG, flags=re.M):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, section


def test_the_license_is_declared_and_shipped() -> None:
    project = PROJECT["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression (PEP 639)
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: not both


def test_an_index_shows_keywords_classifiers_and_urls() -> None:
    project = PROJECT["project"]
    assert "reranker" in project["keywords"] and "rag" in project["keywords"]
    classifiers = set(project["classifiers"])
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Topic :: ") for c in classifiers)
    lowest = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {lowest}" in classifiers
    assert {"Documentation", "Changelog"} <= set(project["urls"])
    assert project["urls"]["Changelog"].endswith("CHANGELOG.md")
