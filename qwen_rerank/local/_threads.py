"""How many threads the local model's forward passes use on the CPU, and how passes run at once.

Torch's default intra-op thread count is fitted to the CPUs this process may
use (`fit_threads`), lowered per call on a busy machine (`busy_threads`), and
a call of many passes runs them one per CPU, each on one thread
(`passes_at_once`, `run_in_parallel`). A count the user set is kept.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = [
    "BUSY_LOAD",
    "busy_threads",
    "cgroup_cpu_limit",
    "fit_threads",
    "parse_cpu_max",
    "passes_at_once",
    "run_in_parallel",
    "torch_threads",
    "usable_cpus",
]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: its affinity mask, capped by its cgroup's CPU quota.

    A container limited to 1 CPU on a 16-core host has 16 CPUs in its
    affinity mask but only one CPU's worth of time; a quota of 1.5 CPUs gives 2.
    """
    affinity = getattr(os, "sched_getaffinity", None)  # absent on macOS and Windows
    count = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """This process's cgroup CPU quota in CPUs (cgroup v2 ``cpu.max``, or v1 CFS), ``None`` if unlimited."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v2 = [line.split(":", 2)[2] for line in own if line.startswith("0::")]
    for folder in [root / v2[0].lstrip("/"), root] if v2 else []:
        limit: float | None = _read(folder / "cpu.max", parse_cpu_max)
        if limit is not None:
            return limit
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        quota = _read(folder / "cpu.cfs_quota_us", int)
        period = _read(folder / "cpu.cfs_period_us", int)
        if isinstance(quota, int) and isinstance(period, int) and quota > 0 and period > 0:
            return quota / period
    return None


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"150000 100000"`` is 1.5); ``None`` for ``"max"``."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return int(fields[0]) / period if period > 0 else None


def _read(path: Path, parse: Any) -> Any:
    try:
        return parse(path.read_text().strip())
    except (OSError, ValueError, IndexError):
        return None


def fit_threads(usable: int | None = None) -> int | None:
    """Lower torch's intra-op threads to ``usable_cpus`` when torch's own default exceeds them.

    PyTorch starts one thread per core of the host, blind to the affinity
    mask and the container's quota; threads beyond the CPUs the process gets
    wait at every operator's barrier for a share of the same CPUs. Only
    torch's default is lowered: a count set by ``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS`` or ``torch.set_num_threads`` (any other count than the
    host's cores) is the user's, and is kept.

    Args:
        usable: The CPUs to fit; ``None`` measures them with ``usable_cpus``.

    Returns:
        The thread count now in use when it is torch's default (ours to adapt,
        see ``busy_threads``), or ``None`` when it is the user's.
    """
    current = torch.get_num_threads()
    if any(os.environ.get(name) for name in _THREAD_VARIABLES):
        return None
    usable = usable_cpus() if usable is None else usable
    if current not in _host_core_counts():
        return None
    if current > usable:
        torch.set_num_threads(usable)
        return usable
    return current


def _host_core_counts() -> set[int]:
    """The counts torch may default to: the host's logical CPUs and its physical cores."""
    counts = {os.cpu_count() or 1}
    cores: set[tuple[str, str]] = set()
    try:
        physical = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical = value.strip()
            elif key.strip() == "core id":
                cores.add((physical, value.strip()))
    except OSError:
        pass
    if cores:
        counts.add(len(cores))
    return counts


BUSY_LOAD = 1.5
"""A 1-minute load average above this many times the usable CPUs counts as a busy machine."""


def busy_threads(threads: int, cpus: int, load: float | None = None) -> int:
    """Threads for one call: ``threads``, or only the CPUs other work leaves free on a busy machine.

    Every operator of a forward pass ends in a barrier across torch's threads.
    When other processes keep the CPUs busy, one of our threads is often
    descheduled, and the others wait for it at each barrier, for a scheduler
    slice. Measured on 2 CPUs at a load average of 17: a call on the tiny
    model took 2.6-3.8 s with 2 threads and 0.11 s with 1; 16 mixed documents
    on the 0.6B width (2 layers, bf16) took 42-53 s with 2 threads and 23-28 s
    with 1.

    Args:
        threads: The thread count on a quiet machine.
        cpus: The CPUs this process may use (see ``usable_cpus``).
        load: The 1-minute load average; ``None`` reads it from the OS.

    Returns:
        ``threads`` while the load stays under ``BUSY_LOAD`` times ``cpus``;
        above, ``cpus`` less the excess load, at least 1.
    """
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - where the OS keeps no load average
            return threads
    if load <= BUSY_LOAD * cpus:
        return threads
    return max(1, min(threads, cpus - math.ceil(load - cpus)))


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore torch's count; ``None`` changes nothing."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def passes_at_once(passes: int, threads: int | None, cpus: int, can_split: bool) -> tuple[int, int | None]:
    """How a call of ``passes`` forward passes runs: (passes at once, threads for serial passes).

    Only torch's default count (ours, on the CPU: ``threads``, from
    `fit_threads`) is adapted; with a count the user set, before loading or
    after, passes run one at a time with it. With ours, passes run one per
    CPU, each on one intra-op thread, so no operator waits at a barrier for a
    thread that other work has descheduled: when the passes can be split
    (``can_split``: the model is not compiled), and there are at least two
    passes per thread, or two on a busy machine. Otherwise they run one at a
    time, with only the CPUs left free on a busy machine (see
    `busy_threads`), else with torch's count (``None``).
    """
    if not threads or torch.get_num_threads() != threads:
        return 1, None
    free = busy_threads(threads, cpus)
    busy = free < threads
    if can_split and threads >= 2 and (passes >= 2 * threads or (busy and passes >= 2)):
        return min(threads, passes), None
    return 1, free if busy else None


Item = TypeVar("Item")


def run_in_parallel(
    items: Sequence[Item], workers: int, run: Callable[[Item], None], finished: Callable[[Item], None]
) -> None:
    """``run(item)`` for every item on ``workers`` threads, taken in order; ``finished(item)`` on this thread.

    Each worker takes the next item when it is free, so items sorted longest
    first balance well. The first error is raised here once the items already
    running have ended; the items not yet started are dropped.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qwen-rerank") as pool:
        futures: dict[Future[None], Item] = {pool.submit(run, item): item for item in items}
        try:
            for future in as_completed(futures):
                future.result()
                finished(futures[future])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
