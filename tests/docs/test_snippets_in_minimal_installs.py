"""Each README and framework-page snippet runs in a venv holding only the extra its section names.

The development venv has every extra, so a snippet that leans on a package its extra lacks (numpy,
torch) passes there and crashes for a reader. Here each snippet runs in a venv made by
``pip install "qwen-rerank[EXTRA]"`` from this tree, nothing else. Snippets whose extra has no
torch are pointed with ``base_url=`` at the fake vLLM server, as their comments suggest; the
Quickstart loads ``Qwen/Qwen3-Reranker-0.6B``, which a test hub cache maps to the tiny model.

The venvs are built once per set of requirements (their hash names them) under the per-user cache
folder, all at once, and reused by later sessions. The tree itself is on ``PYTHONPATH``, so the
code under test is always this checkout's; the venv only decides which dependencies exist.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank._paths import user_cache_dir
from tests.docs.snippets import against_server, python_blocks, section
from tests.helpers import ROOT, make_hub_cache

pytestmark = [pytest.mark.external, pytest.mark.slow, pytest.mark.xdist_group("minimal-installs")]

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

# (file, section heading, the extra that section tells the reader to install)
SNIPPETS = [
    ("README.md", "Quickstart", "local"),
    ("README.md", "LangChain", "langchain"),
    ("README.md", "LlamaIndex", "llamaindex"),
    ("README.md", "Haystack", "haystack"),
    ("docs/langchain.md", "In ten lines", "langchain"),
    ("docs/llamaindex.md", "In ten lines", "llamaindex"),
    ("docs/haystack.md", "In ten lines", "haystack"),
    ("docs/testing.md", "A tiny model", "testing"),
    ("docs/evaluation.md", "From Python", "eval,testing"),
]
TORCH_EXTRAS = {"local", "testing", "mteb", "bench"}


def needs_torch(extra: str) -> bool:
    return bool(TORCH_EXTRAS & set(extra.split(",")))


def python_block(path: str, heading: str) -> str:
    blocks = python_blocks(read(path), heading)
    assert blocks, f"{path}: no python block under {heading!r}"
    return blocks[0]


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def install_line(path: str, heading: str) -> str:
    """Where the reader of this snippet is told what to install."""
    return section(read("README.md"), "Install") if path == "README.md" else read(path)


def requirements(extra: str) -> list[str]:
    """What ``pip install "qwen-rerank[extra]"`` asks for, its own extras spelled out."""
    project = tomllib.loads(read("pyproject.toml"))["project"]
    wanted, seen = extra.split(","), set()
    found = list(project["dependencies"])
    while wanted:
        name = wanted.pop()
        seen.add(name)
        for req in project["optional-dependencies"][name]:
            inner = re.fullmatch(r"qwen-rerank\[(.+)\]", req)
            found += [] if inner else [req]
            wanted += [e for e in inner.group(1).split(",") if e not in seen] if inner else []
    return sorted(found)


def build_venv(extra: str) -> Path:
    """A venv with ``qwen-rerank[extra]`` from this tree, built once per set of requirements."""
    key = hashlib.sha256(f"{sys.version} {requirements(extra)}".encode()).hexdigest()[:12]
    home = user_cache_dir() / "snippet-venvs" / f"{extra}-{key}"
    python = home / "bin" / "python"
    home.parent.mkdir(parents=True, exist_ok=True)
    # One builder per venv: another test file (on another worker) waits for it and reuses it.
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "done").is_file():
            (home / "done").touch()  # in use: not stale
            return python
        prune_stale(home)
        _build(extra, home)
    return python


def _build(extra: str, home: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".building-{extra}-", dir=home.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True, capture_output=True)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "-q"]
        if needs_torch(extra):  # first and pinned, so that pip takes the CPU build at hand
            run_pip([*pip, f"torch=={importlib.metadata.version('torch').split('+')[0]}"])
        run_pip([*pip, f"{ROOT}[{extra}]"])
        (staging / "done").write_text(extra, encoding="utf-8")
        try:
            staging.rename(home)
        except OSError:  # another session finished first
            if not (home / "done").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prune_stale(home: Path) -> None:
    """Remove this extra's venvs for older requirements, unused for a day (a torch one is 1.2 GB)."""
    for old in home.parent.glob(f"{home.name.rsplit('-', 1)[0]}-*"):
        done = old / "done"
        if old != home and done.is_file() and time.time() - done.stat().st_mtime > 86_400:
            shutil.rmtree(old, ignore_errors=True)


def run_pip(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def venvs() -> dict[str, Path]:
    """One venv per extra, the missing ones built in parallel."""
    extras = sorted({extra for _, _, extra in SNIPPETS})
    with ThreadPoolExecutor(len(extras)) as pool:
        return dict(zip(extras, pool.map(build_venv, extras), strict=True))


@pytest.fixture(scope="module")
def hub_cache(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache in which the tiny model is stored as Qwen/Qwen3-Reranker-0.6B."""
    return make_hub_cache(tiny_model_path, tmp_path_factory.mktemp("hf-hub"))


@pytest.mark.parametrize(("path", "heading", "extra"), SNIPPETS)
def test_snippet_runs_in_its_minimal_install(
    path: str,
    heading: str,
    extra: str,
    venvs: dict[str, Path],
    hub_cache: Path,
    fake_vllm: Any,
) -> None:
    told = install_line(path, heading)
    assert f'pip install "qwen-rerank[{extra}]"' in told or f'pip install ".[{extra}]"' in told, extra
    python = venvs[extra]
    code = python_block(path, heading)
    if not needs_torch(extra):
        code = against_server(code, fake_vllm.url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "HAYSTACK_TELEMETRY_ENABLED": "False",
    }
    proc = subprocess.run(
        [str(python), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{path} / {heading} in [{extra}]:\n{code}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{path} / {heading} printed nothing"
    if not needs_torch(extra):
        assert fake_vllm.rerank_requests, "the snippet did not reach the server"
        has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, env=env)
        assert has_torch.returncode != 0, f"[{extra}] installed torch: the remote path must not need it"
