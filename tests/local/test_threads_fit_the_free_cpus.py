"""Torch's default threads fit the CPUs the process may use, and fewer run while the CPUs are busy;
a thread count the user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker
from qwen_rerank.local._threads import (
    busy_threads,
    cgroup_cpu_limit,
    parse_cpu_max,
    torch_threads,
    usable_cpus,
)


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
        "from qwen_rerank.local._threads import fit_threads\n"
        "print(fit_threads(usable=1), torch.get_num_threads())\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    environment.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment
    )
    return out.stdout.strip()


@pytest.mark.slow  # a fresh interpreter imports torch
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for torch's default to exceed 1")
def test_torchs_default_is_lowered_to_the_usable_cpus() -> None:
    assert _threads_after("") == "1 1"


@pytest.mark.slow  # a fresh interpreter imports torch
def test_a_count_set_with_torch_set_num_threads_is_kept() -> None:
    count = (os.cpu_count() or 1) + 1  # any count but the host's, which is also torch's default
    assert _threads_after(f"torch.set_num_threads({count})") == f"None {count}"


@pytest.mark.slow  # a fresh interpreter imports torch
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs for torch's default to exceed 1")
def test_a_count_set_in_the_environment_is_kept() -> None:
    threads = str(len(os.sched_getaffinity(0)))
    assert _threads_after("", {"OMP_NUM_THREADS": threads}) == f"None {threads}"


@pytest.mark.parametrize(
    ("threads", "cpus", "load", "expected"),
    [(2, 2, 1.0, 2), (2, 2, 3.0, 2), (2, 2, 3.1, 1), (2, 2, 17.0, 1), (16, 16, 30.0, 2), (8, 16, 26.0, 6)],
)
def test_a_call_on_a_busy_machine_uses_only_the_free_cpus(
    threads: int, cpus: int, load: float, expected: int
) -> None:
    assert busy_threads(threads, cpus, load) == expected


def test_a_call_restores_torchs_thread_count(tiny_model_path: Path) -> None:
    import torch

    reranker = LocalReranker(str(tiny_model_path), device="cpu")
    before = torch.get_num_threads()
    seen: list[int] = []
    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads())
    )
    try:
        reranker.score("q", ["a", "b"])
    finally:
        handle.remove()
    assert torch.get_num_threads() == before
    assert seen and all(1 <= n <= before for n in seen)


WALL = "the great wall was built over many centuries "
DOCUMENTS = [f"passage {i}: " + WALL * (i % 5 + 1) for i in range(24)]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="parallel passes need 2 usable CPUs")
def test_many_passes_run_at_once_one_intra_op_thread_each(tiny_model_path: Path) -> None:
    import threading
    import time

    import torch

    reranker = LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=128)
    if reranker._threads is None or reranker._threads < 2:
        pytest.skip("torch's default thread count is not ours to split here")
    seen: list[tuple[int, int]] = []

    def record(*_: object) -> None:
        seen.append((threading.get_ident(), torch.get_num_threads()))
        time.sleep(0.02)  # long enough that two passes overlap

    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(record)
    try:
        parallel = reranker.score("where is the wall?", DOCUMENTS)
    finally:
        handle.remove()
    assert len({ident for ident, _ in seen}) >= 2
    assert {count for _, count in seen} == {1}
    assert torch.get_num_threads() == reranker._threads  # restored after the call

    with torch_threads(torch.get_num_threads() + 1):  # a count the user chose: one pass at a time
        serial = reranker.score("where is the wall?", DOCUMENTS)
    assert max(abs(a - b) for a, b in zip(parallel, serial, strict=True)) < 1e-5


def test_a_failing_parallel_pass_raises_and_drops_the_passes_not_started() -> None:
    import time

    from qwen_rerank.local._threads import run_in_parallel

    started: list[int] = []
    finished: list[int] = []

    def run(job: int) -> None:
        started.append(job)
        if job == 0:
            raise RuntimeError("pass 0 failed")
        time.sleep(0.05)

    with pytest.raises(RuntimeError, match="pass 0 failed"):
        run_in_parallel(list(range(50)), 2, run, finished.append)
    assert 0 in started and len(started) < 50 and 0 not in finished


def test_a_busy_machine_runs_a_call_of_few_passes_on_the_free_cpus(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    reranker = LocalReranker(str(tiny_model_path), device="cpu")
    if reranker._threads is None or reranker._threads < 2:
        pytest.skip("torch's default thread count is not ours to lower here")
    quiet = reranker.score("q", ["a", "b"])
    monkeypatch.setattr(os, "getloadavg", lambda: (10.0 * reranker._cpus, 0.0, 0.0))
    seen: list[int] = []
    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads())
    )
    try:
        busy = reranker.score("q", ["a", "b"])
    finally:
        handle.remove()
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == reranker._threads
    assert max(abs(a - b) for a, b in zip(quiet, busy, strict=True)) < 1e-5


def test_torch_threads_restores_the_count_after_an_error() -> None:
    import torch

    before = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        _ = 1 / 0
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
