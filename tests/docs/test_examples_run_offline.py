"""Every script in examples/ runs, offline, on the tiny model or the fake vLLM server, so none rots.

Each runs as a reader runs it (``--tiny``), with its own empty temporary folder (``TMPDIR``): it
must print nothing on stderr and leave that folder as it found it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("examples")]

EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

# How each example runs offline: on the cached tiny model, as its docstring tells a reader.
OFFLINE_ARGS = {
    "quickstart.py": ["--tiny"],
    "langchain_rag.py": ["--tiny", "--top-n", "3"],
    "llamaindex_query_engine.py": ["--tiny", "--top-n", "3"],
    "vllm_remote.py": ["--tiny", "--top-n", "3"],
    "ray_batch.py": ["--tiny", "--top-n", "3"],
    "haystack_pipeline.py": ["--tiny", "--top-n", "3"],
}
# Ray's C++ core warns about its own default for Ray Data's actors (restart forever) on stderr, out
# of reach of Python's logging; no public argument of Ray 2.60 turns it off (ray issue 53727), so
# the example says so to its reader.
RAY_CORE_WARNING = re.compile(
    r"^\[[^\]]+\] core_worker\.cc:\d+: Actor .*/ray-project/ray/issues/53727\b.*\n", re.M
)
# torch makes its per-user cache folder in the temporary folder once and reuses it: not a leftover.
TORCH_CACHE = re.compile(r"torchinductor_\w+")

# A ranked line as the examples print it: "1. 0.1234  text" (quickstart adds the "[index]").
RANKED = re.compile(r"^\d+\. (?:\[\d+\] )?(\d\.\d{4})  (.+)$")


def ranked_blocks(stdout: str) -> list[list[tuple[float, str]]]:
    """The ranked lists in the output, one per block of consecutive ranked lines."""
    blocks: list[list[tuple[float, str]]] = []
    previous = False
    for line in stdout.splitlines():
        match = RANKED.match(line)
        if match and not previous:
            blocks.append([])
        if match:
            blocks[-1].append((float(match.group(1)), match.group(2)))
        previous = bool(match)
    return blocks


def example_docstring(script: str) -> str:
    return ast.get_docstring(ast.parse((ROOT / "examples" / script).read_text(encoding="utf-8"))) or ""


def test_every_example_is_covered() -> None:
    assert EXAMPLES, "no examples found"
    missing = sorted(set(EXAMPLES) - set(OFFLINE_ARGS))
    assert not missing, f"add offline arguments for {missing} to OFFLINE_ARGS so they are run"


class Run(subprocess.Popen[str]):
    tmpdir: Path


def launch(script: str, tmpdir: Path, args: list[str] | None = None) -> Run:
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    env.pop("TRANSFORMERS_VERBOSITY", None)  # as a reader runs it: loading bars would show
    run = Run(
        [sys.executable, str(ROOT / "examples" / script), *(OFFLINE_ARGS[script] if args is None else args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    run.tmpdir = tmpdir
    return run


@pytest.fixture(scope="module")
def local_runs() -> Iterator[dict[str, Run]]:
    """The examples, all started at once: most of their time is imports."""
    from qwen_rerank.testing import make_tiny_reranker

    make_tiny_reranker()  # built before they start, so that none of them builds it
    scripts = [s for s in EXAMPLES if s in OFFLINE_ARGS]
    # A short folder: Ray's socket paths in it must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="qr-ex-", dir="/tmp" if os.name == "posix" else None))
    runs = {script: launch(script, root / script.removesuffix(".py")) for script in scripts}
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.communicate()
    shutil.rmtree(root, ignore_errors=True)


def check_output(script: str, run: Run) -> str:
    try:
        stdout, stderr = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        run.kill()
        stdout, stderr = run.communicate()
        pytest.fail(f"examples/{script} timed out:\n{stdout}\n{stderr}")
    assert run.returncode == 0, f"examples/{script} failed:\n{stdout}\n{stderr}"
    if script == "ray_batch.py" and RAY_CORE_WARNING.search(stderr):
        # The example tells its reader about this line, so it may print it; nothing else.
        assert "ray issue 53727" in " ".join(example_docstring(script).split()), "ray_batch.py hides it"
        stderr = RAY_CORE_WARNING.sub("", stderr, count=1)
    assert not stderr, f"examples/{script} printed on stderr, besides what it means to show:\n{stderr}"
    left = sorted(p.name for p in run.tmpdir.iterdir() if not TORCH_CACHE.fullmatch(p.name))
    assert not left, f"examples/{script} left {left} in its temporary folder"
    reranked = [block for block in ranked_blocks(stdout) if block]
    assert reranked, f"examples/{script} printed no ranking:\n{stdout}"
    for block in reranked:
        scores = [score for score, _ in block]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    if script != "quickstart.py":
        assert "Before" in stdout and "After" in stdout
        assert len(reranked[-1]) == 3  # --top-n 3
    return stdout


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_offline(script: str, local_runs: dict[str, Run]) -> None:
    if script not in local_runs:
        pytest.fail(f"examples/{script} has no entry in OFFLINE_ARGS")
    check_output(script, local_runs[script])


def test_vllm_remote_example_runs_against_the_fake_server(fake_vllm: Any, tmp_path: Path) -> None:
    run = launch("vllm_remote.py", tmp_path / "tmp", args=["--base-url", fake_vllm.url, "--top-n", "3"])
    check_output("vllm_remote.py", run)
    assert len(fake_vllm.rerank_requests) == 2  # LangChain, then LlamaIndex, over HTTP
