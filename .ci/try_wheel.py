"""Install the wheel in DIST into fresh venvs, and run there what a new user runs first.

    .venv/bin/python .ci/try_wheel.py DIST

1. A venv with the wheel and no extra: `import qwen_rerank` and `qwen-rerank --version` work,
   torch is absent, and the remote quickstart of docs/remote.md (its first block) runs against
   the fake vLLM server.
2. A venv with the wheel and `[langchain]`: the README's LangChain snippet runs with
   `base_url=` on the same server (as its comment offers: `[langchain]` has no torch to run the
   model here), and torch is still absent.

The fake server needs torch, so it runs in this interpreter (the project's .venv); the snippets
run in the fresh venvs, from a folder outside the checkout, so they import the installed wheel and
nothing else. Exits non-zero at the first failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qwen_rerank.testing import FakeVLLMServer, make_tiny_reranker  # noqa: E402
from tests.docs.snippets import against_server, markdown_blocks, point_at, python_blocks  # noqa: E402


def fresh_venv(home: Path, requirement: str) -> Path:
    """A new venv at ``home`` with ``requirement`` installed; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    python = home / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement], check=True
    )
    return python


def run(python: Path, code: str, where: Path) -> str:
    """``code`` run by ``python`` in ``where``, with no PYTHONPATH: its stdout, or exit on failure."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(python), "-c", code], cwd=where, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed in {python.parent.parent.name}:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}")
    return proc.stdout


def check_installed(python: Path, version: str, where: Path) -> None:
    """The venv imports the installed qwen_rerank, at the wheel's version, and has no torch."""
    shown = run(python, "import qwen_rerank; print(qwen_rerank.__version__, qwen_rerank.__file__)", where)
    found, path = shown.split()
    if found != version or not path.startswith(str(python.parent.parent)):
        sys.exit(f"the venv imports qwen_rerank {found} from {path}, not the wheel's {version}")
    no_torch = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    run(python, no_torch, where)


def expect_lines(output: str, count: int, what: str) -> None:
    lines = output.strip().splitlines()
    if len(lines) != count:
        sys.exit(f"{what} printed {len(lines)} lines, not {count}:\n{output}")
    print(f"{what}: ok\n  " + "\n  ".join(lines))


def main(dist: Path) -> None:
    (wheel,) = dist.glob("qwen_rerank-*.whl")
    version = wheel.name.split("-")[1]
    quickstart = markdown_blocks("docs/remote.md")[0].code
    langchain = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "LangChain")[0]
    work = Path(tempfile.mkdtemp(prefix="try-wheel-"))
    try:
        with FakeVLLMServer(str(make_tiny_reranker())) as server:
            core = fresh_venv(work / "core", str(wheel))
            check_installed(core, version, work)
            cli = subprocess.run(
                [str(core.parent / "qwen-rerank"), "--version"], capture_output=True, text=True
            )
            if cli.stdout.strip() != f"qwen-rerank {version}":
                sys.exit(f"qwen-rerank --version printed {cli.stdout!r} {cli.stderr!r}")
            expect_lines(run(core, point_at(quickstart, server.url), work), 2, "remote quickstart, no extras")

            with_langchain = fresh_venv(work / "langchain", f"{wheel}[langchain]")
            check_installed(with_langchain, version, work)
            expect_lines(
                run(with_langchain, against_server(langchain, server.url), work), 2, "README LangChain"
            )
            if not server.rerank_requests:
                sys.exit("no snippet reached the fake server")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
