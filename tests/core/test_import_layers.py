"""The layer contracts of .importlinter hold, and catch a break: run as CI runs them, on this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qwen_rerank", "langchain_qwen_rerank", "llamaindex_qwen_rerank", "haystack_qwen_rerank")


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


def test_every_layer_contract_is_kept() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 kept, 0 broken" in proc.stdout


def test_a_core_module_importing_a_wing_breaks_its_contract(tmp_path: Path) -> None:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            copy = tmp_path / package / path.relative_to(ROOT / package)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    base = tmp_path / "qwen_rerank" / "base.py"
    base.write_text(base.read_text(encoding="utf-8") + "\nimport qwen_rerank.remote\n", encoding="utf-8")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "The core (top-level modules) imports no wing BROKEN" in " ".join(proc.stdout.split())
    assert "qwen_rerank.base -> qwen_rerank.remote" in proc.stdout
