"""Every script in examples/ runs, offline, on the tiny model or the fake vLLM server, so none rots."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

# How each example runs offline: a function of the tiny model's path and the fake server's URL.
OFFLINE_ARGS = {
    "quickstart.py": lambda model, url: ["--tiny"],
    "langchain_rag.py": lambda model, url: ["--model", model, "--top-n", "3"],
    "llamaindex_query_engine.py": lambda model, url: ["--model", model, "--top-n", "3"],
    "vllm_remote.py": lambda model, url: ["--tiny", model, "--top-n", "3"],
    "ray_batch.py": lambda model, url: ["--model", model, "--top-n", "3"],
    "haystack_pipeline.py": lambda model, url: ["--model", model, "--top-n", "3"],
}

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


def test_every_example_is_covered() -> None:
    assert EXAMPLES, "no examples found"
    missing = sorted(set(EXAMPLES) - set(OFFLINE_ARGS))
    assert not missing, f"add offline arguments for {missing} to OFFLINE_ARGS so they are run"


def launch(script: str, model: str, url: str, args: list[str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": str(ROOT)}
    args = OFFLINE_ARGS[script](model, url) if args is None else args
    return subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def local_runs(tiny_model_path: Path) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The examples that load a model, all started at once: most of their time is imports."""
    scripts = [s for s in EXAMPLES if s in OFFLINE_ARGS]
    runs = {script: launch(script, str(tiny_model_path), "") for script in scripts}
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.communicate()


def check_output(script: str, run: subprocess.Popen[str]) -> str:
    try:
        stdout, stderr = run.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        run.kill()
        stdout, stderr = run.communicate()
        pytest.fail(f"examples/{script} timed out:\n{stdout}\n{stderr}")
    assert run.returncode == 0, f"examples/{script} failed:\n{stdout}\n{stderr}"
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
def test_example_runs_offline(script: str, local_runs: dict[str, subprocess.Popen[str]]) -> None:
    if script not in local_runs:
        pytest.fail(f"examples/{script} has no entry in OFFLINE_ARGS")
    check_output(script, local_runs[script])


def test_vllm_remote_example_runs_against_the_fake_server(fake_vllm: Any) -> None:
    run = launch("vllm_remote.py", "", "", args=["--base-url", fake_vllm.url, "--top-n", "3"])
    check_output("vllm_remote.py", run)
    assert len(fake_vllm.rerank_requests) == 2  # LangChain, then LlamaIndex, over HTTP
