"""The README's Python snippets run exactly as written (the docs' run in test_snippets_run_as_written.py).

The snippets name the real hub id, "Qwen/Qwen3-Reranker-0.6B". Each runs in a fresh interpreter
whose Hugging Face cache holds the tiny test model under that id, offline: the code a user copies
is the code that runs, down to the model's name, through the real hub-id loading path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.snippets import markdown_blocks, python_blocks
from tests.helpers import HUB_ID, ROOT, make_hub_cache

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN = {"Quickstart": 2, "LangChain": 2, "LlamaIndex": 2, "Haystack": 2}  # section: rows it prints


@pytest.fixture(scope="module")
def hub_cache(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache in which the tiny model is stored as Qwen/Qwen3-Reranker-0.6B."""
    return make_hub_cache(tiny_model_path, tmp_path_factory.mktemp("hf-hub"))


def run_snippet(code: str, hub_cache: Path, cwd: Path) -> str:
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"the snippet failed:\n{code}\n--- stderr ---\n{proc.stderr}"
    assert "Loading weights" not in proc.stderr
    return proc.stdout


def test_every_readme_block_is_run_here() -> None:
    run_here = [code for heading in RUN for code in python_blocks(README, heading)]
    assert [block.code for block in markdown_blocks("README.md")] == run_here


@pytest.mark.parametrize(("heading", "rows"), sorted(RUN.items()))
def test_readme_snippet_runs_as_written(heading: str, rows: int, hub_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        {"LangChain": "langchain_classic", "LlamaIndex": "llama_index.core", "Haystack": "haystack"}.get(
            heading, "torch"
        )
    )
    (code,) = python_blocks(README, heading)
    assert HUB_ID in code
    lines = run_snippet(code, hub_cache, tmp_path).splitlines()
    assert len(lines) == rows, lines
    scores = [float(line.split()[1 if heading == "Quickstart" else 0]) for line in lines]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert any("Beijing is the capital of China." in line for line in lines) or heading != "Quickstart"


def test_readme_is_a_front_page() -> None:
    assert len(README.encode("utf-8")) <= 11_000
    for heading in (
        "Install",
        "The two commands",
        "Quickstart",
        "LangChain",
        "LlamaIndex",
        "The command line",
    ):
        assert re.search(rf"^## {heading}$", README, flags=re.M), heading
    assert "download.pytorch.org/whl/cpu" in README
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / link).is_file(), link
