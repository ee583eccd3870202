"""Every Python block of docs/*.md and of the docstrings runs as written, offline, or says why not.

A block names the default checkpoint, ``Qwen/Qwen3-Reranker-0.6B``, by its hub id: here that id
resolves, through a Hugging Face cache made for the test, to the tiny random model with the real
tokenizer, so nothing is downloaded and the block runs unchanged. Each runs in a fresh
interpreter, in a folder of its own that holds ``examples/`` (the tiny dataset) and a checkpoint
folder ``Qwen3-Reranker-0.6B``, as a reader who downloaded it has; ``TMPDIR`` (Ray's too) is a
folder of the test's. The markers of ``tests/docs/snippets.py`` say how a block runs otherwise:
after the block above it, against the fake vLLM server, or not at all, with the reason. The
README's blocks are run by ``test_readme_snippets.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.docs.snippets import Block, docstring_blocks, markdown_blocks, point_at, programs
from tests.helpers import ROOT, make_hub_cache

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("snippets")]

PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
FRAMEWORK_PAGES = ["docs/langchain.md", "docs/llamaindex.md", "docs/haystack.md", "docs/mteb.md"]
CHAINS = [markdown_blocks(page) for page in PAGES] + docstring_blocks()
CASES = {block.where: (block, code) for chain in CHAINS for block, code in programs(chain)}
CHECKPOINT = "Qwen3-Reranker-0.6B"  # the folder a reader downloads the checkpoint into
# Blocks run side by side: most of their time is imports, and each holds torch in memory.
AT_ONCE = 4


def test_each_framework_page_has_a_short_runnable_example() -> None:
    for page in FRAMEWORK_PAGES:
        runnable = [block for block in markdown_blocks(page) if block.runs]
        assert runnable, f"{page} has no runnable example"
        assert len(runnable[0].code.strip().splitlines()) <= 14, f"{page}: the first example is not short"


def test_every_block_that_is_not_run_says_why() -> None:
    skipped = [block for chain in CHAINS for block in chain if not block.runs]
    assert all(block.skip and len(block.skip) > 10 for block in skipped), skipped
    assert len(CASES) > len(skipped), "most blocks must run"


@pytest.fixture(scope="module")
def workspace(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What each block's folder links to: the hub cache and the downloaded checkpoint."""
    base = tmp_path_factory.mktemp("snippets")
    make_hub_cache(tiny_model_path, base / "hub")
    shutil.copytree(tiny_model_path, base / CHECKPOINT)
    return base


Result = Future[subprocess.CompletedProcess[str]]


def run(
    block: Block, code: str, workspace: Path, server_url: str, scratch: Path
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, in a folder of its own under ``scratch``."""
    folder = Path(tempfile.mkdtemp(prefix="b", dir=scratch))
    (folder / "cwd").mkdir()
    (folder / "tmp").mkdir()
    (folder / "cwd" / "examples").symlink_to(ROOT / "examples")
    (folder / "cwd" / CHECKPOINT).symlink_to(workspace / CHECKPOINT)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(workspace / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(folder / "tmp"),
        "RAY_TMPDIR": str(folder / "tmp"),
    }
    program = point_at(code, server_url) if block.on_server else code
    try:
        return subprocess.run(
            [sys.executable, "-c", program],
            cwd=folder / "cwd",
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A short folder for the blocks' own ones: Ray's socket paths in it must stay under 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="qr-snip-", dir="/tmp" if os.name == "posix" else None))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def results(workspace: Path, scratch: Path, _fake_vllm_session: Any) -> Iterator[dict[str, Result]]:
    """Every runnable block, started at once, ``AT_ONCE`` at a time."""
    with ThreadPoolExecutor(AT_ONCE) as pool:
        yield {
            where: pool.submit(run, block, code, workspace, _fake_vllm_session.url, scratch)
            for where, (block, code) in CASES.items()
        }


@pytest.mark.parametrize("where", sorted(CASES))
def test_block_runs_as_written(where: str, results: dict[str, Result]) -> None:
    proc = results[where].result()
    code = CASES[where][1]
    assert proc.returncode == 0, (
        f"{where}:\n{code}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
