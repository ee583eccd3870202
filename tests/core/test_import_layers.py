"""The layer contracts of .importlinter hold, and catch a break: run as CI runs them, on this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qwen_rerank", "langchain_qwen_rerank", "llamaindex_qwen_rerank", "haystack_qwen_rerank")
LAYERS = "The wings are layers: each imports only the layers below it, and local and remote never each other"


def lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contracts, on the packages under `source`."""
    script = Path(sys.executable).with_name("lint-imports")
    assert script.exists(), f"{script} is missing: pip install -e '.[dev]' installs import-linter"
    return subprocess.run(
        [str(script), "--no-cache", "--no-logo", str(ROOT / ".importlinter")],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_packages(tmp_path: Path) -> Path:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            copy = tmp_path / package / path.relative_to(ROOT / package)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    return tmp_path


def test_every_layer_contract_is_kept() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("base.py", "import qwen_rerank.remote", "qwen_rerank.base -> qwen_rerank.remote"),
        ("local/__init__.py", "import qwen_rerank.remote", "qwen_rerank.local -> qwen_rerank.remote"),
        ("tools/diagnose.py", "import qwen_rerank.cli", "qwen_rerank.tools.diagnose -> qwen_rerank.cli"),
    ],
    ids=["core imports a wing", "local imports remote", "tools import the cli"],
)
def test_an_import_against_the_layers_breaks_their_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    source = copy_of_the_packages(tmp_path)
    path = source / "qwen_rerank" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    proc = lint_imports(source)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{LAYERS} BROKEN" in " ".join(proc.stdout.split())
    assert broken in proc.stdout


def test_a_new_top_level_module_must_be_given_a_layer(tmp_path: Path) -> None:
    source = copy_of_the_packages(tmp_path)
    (source / "qwen_rerank" / "newcomer.py").write_text('"""Not in any layer yet."""\n', encoding="utf-8")
    proc = lint_imports(source)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{LAYERS} BROKEN" in " ".join(proc.stdout.split())
    assert "- qwen_rerank.newcomer" in proc.stdout
