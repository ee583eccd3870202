"""Torch's default threads fit the CPUs the process may use, the default budget grows on a busy CPU;
a user's choice of either is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.local._devices import busy_batch_tokens, cgroup_cpu_limit, parse_cpu_max, usable_cpus


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000", None), ("100000 100000", 1.0), ("150000 100000", 1.5), ("50000", 0.5), ("", None)],
)
def test_cpu_max_lines_read_as_cpus(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


def test_a_cgroup_v1_quota_limits_the_usable_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.0
    assert usable_cpus(tmp_path) == 1


def test_no_quota_leaves_the_affinity_mask(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def _threads_after(setup: str, env: dict[str, str] | None = None) -> str:
    code = (
        "import torch\n"
        f"{setup}\n"
        "from qwen_rerank.local._devices import fit_threads\n"
        "print(fit_threads(usable=1), torch.get_num_threads())\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    environment.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment
    )
    return out.stdout.strip()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for torch's default to exceed 1")
def test_torchs_default_is_lowered_to_the_usable_cpus() -> None:
    assert _threads_after("") == "1 1"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 3, reason="needs 3 CPUs for a count other than the host's")
def test_a_count_set_with_torch_set_num_threads_is_kept() -> None:
    assert _threads_after("torch.set_num_threads(2)") == "2 2"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for torch's default to exceed 1")
def test_a_count_set_in_the_environment_is_kept() -> None:
    threads = str(len(os.sched_getaffinity(0)))
    assert _threads_after("", {"OMP_NUM_THREADS": threads}) == f"{threads} {threads}"


@pytest.mark.parametrize(
    ("tokens", "load", "expected"),
    [(2048, 1.0, 2048), (2048, 3.0, 2048), (2048, 3.1, 8192), (1024, 9.0, 4096), (4096, 9.0, 8192)],
)
def test_the_budget_grows_only_on_a_busy_machine(tokens: int, load: float, expected: int) -> None:
    assert busy_batch_tokens(tokens, 2, load) == expected


def test_a_budget_the_user_chose_is_kept_on_a_busy_machine(tiny_model_path: Path) -> None:
    chosen = LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=300)
    assert chosen._call_budget() == 300
    default = LocalReranker(str(tiny_model_path), device="cpu")
    quiet, busy = (busy_batch_tokens(default.max_batch_tokens, usable_cpus(), load) for load in (0.0, 1e9))
    assert quiet == default.max_batch_tokens < busy
    assert default._call_budget() in (quiet, busy)
