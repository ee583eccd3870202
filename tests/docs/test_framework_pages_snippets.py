"""Every Python block of the framework pages in docs/ runs as written, offline.

The blocks load the default checkpoint, ``Qwen/Qwen3-Reranker-0.6B``, by its hub id. Here that id
resolves, through a Hugging Face cache made for the test, to the tiny random model with the real
tokenizer; nothing is downloaded and the blocks run unchanged. A block preceded by a line
``<!-- not run by the tests: REASON -->`` is skipped (it needs downloads or a GPU).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("framework-pages")]

PAGES = ["langchain.md", "llamaindex.md", "haystack.md", "mteb.md"]
BLOCK = re.compile(r"(?P<marker><!-- not run by the tests:[^>]*-->\n)?```python\n(?P<code>.*?)```", re.S)


def python_blocks(page: str) -> list[tuple[str, bool]]:
    """(code, runs) for each fenced python block of the page, in order."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return [(m.group("code"), m.group("marker") is None) for m in BLOCK.finditer(text)]


CASES = [(page, i) for page in PAGES for i, (_, runs) in enumerate(python_blocks(page)) if runs]


def test_each_page_has_a_short_runnable_example() -> None:
    for page in PAGES:
        runnable = [code for code, runs in python_blocks(page) if runs]
        assert runnable, f"docs/{page} has no runnable example"
        assert len(runnable[0].strip().splitlines()) <= 14, f"docs/{page}: the first example is not short"


@pytest.fixture(scope="module")
def hub_cache(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face home whose cache holds the tiny model as Qwen/Qwen3-Reranker-0.6B."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / "models--Qwen--Qwen3-Reranker-0.6B"
    commit = "0" * 40
    shutil.copytree(tiny_model_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return home


@pytest.fixture(scope="module")
def runs(hub_cache: Path) -> Iterator[dict[tuple[str, int], subprocess.Popen[str]]]:
    """Every runnable block, all started at once: most of their time is imports."""
    env = {
        **os.environ,
        "HF_HOME": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "PYTHONPATH": str(ROOT),
    }
    started = {
        (page, i): subprocess.Popen(
            [sys.executable, "-c", python_blocks(page)[i][0]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for page, i in CASES
    }
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize(("page", "index"), CASES)
def test_block_runs_as_written(
    page: str, index: int, runs: dict[tuple[str, int], subprocess.Popen[str]]
) -> None:
    process = runs[(page, index)]
    try:
        stdout, stderr = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    code = python_blocks(page)[index][0]
    assert process.returncode == 0, f"docs/{page}, block {index + 1}:\n{code}\n{stdout}\n{stderr[-3000:]}"
