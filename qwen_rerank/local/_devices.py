"""Where and how the local model runs: device, dtype and the default batch budget."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from qwen_rerank.exceptions import InvalidInputError, QwenRerankWarning

__all__ = [
    "BUSY_LOAD",
    "busy_threads",
    "cgroup_cpu_limit",
    "cpu_has_native",
    "default_batch_tokens",
    "fit_threads",
    "parse_cpu_max",
    "resolve_device",
    "resolve_dtype",
    "torch_threads",
    "usable_cpus",
    "warn_if_slow",
]

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: Any = None) -> torch.device:
    """``device`` as a torch.device; ``None`` picks cuda, then mps, then cpu."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(
            f"device must be 'cpu', 'cuda', 'cuda:N', 'mps', a torch.device or None, got {device!r}."
        ) from exc
    _check_available(resolved)
    return resolved


def _check_available(device: torch.device) -> None:
    """Refuse a cuda or mps device that this machine's PyTorch cannot use, before anything loads."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(
                f"device={str(device)!r}, but this PyTorch sees no CUDA GPU (torch.cuda.is_available() is "
                "False). Pass device='cpu', or leave device unset to use the best device available."
            )
        if device.index is not None and device.index >= count:
            raise InvalidInputError(
                f"device={str(device)!r}, but this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0 to cuda:{count - 1})."
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InvalidInputError(
                f"device={str(device)!r}, but Apple's MPS is not available to this PyTorch. Pass "
                "device='cpu', or leave device unset to use the best device available."
            )


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """``dtype`` as a torch.dtype; ``None`` picks bf16 (else fp16) on GPU and fp32 on CPU."""
    if dtype is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float16):
            return dtype
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPE_NAMES:
        resolved: torch.dtype = getattr(torch, _DTYPE_NAMES[dtype.lower().removeprefix("torch.")])
        return resolved
    raise InvalidInputError(
        f"dtype must be 'float32', 'bfloat16', 'float16', a matching torch.dtype or None, got {dtype!r}."
    )


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` matrices in hardware (float32 always does).

    PyTorch's oneDNN answers: bfloat16 needs AVX-512 (ideally AVX512-BF16 or
    AMX) on x86, or the BF16 extension on Arm; float16 needs AVX512-FP16 or
    AMX-FP16. Where the check is missing, the answer is yes.
    """
    checks = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
    check = getattr(torch.ops.mkldnn, checks[dtype], None) if dtype in checks else None
    try:
        return True if check is None else bool(check())
    except RuntimeError:  # pragma: no cover - a torch built without oneDNN
        return True


def warn_if_slow(dtype: torch.dtype, device: torch.device) -> None:
    """Warn (`QwenRerankWarning`) about a half-precision dtype on a CPU without hardware for it.

    Such a CPU converts every block of a matrix multiply to float32 and back:
    on an AMD EPYC with AVX2 only (torch 2.13), a bfloat16 linear layer of
    the 0.6B model's size ran at 18 GFLOP/s against float32's 108.
    """
    if device.type != "cpu" or dtype == torch.float32 or cpu_has_native(dtype):
        return
    name = str(dtype).removeprefix("torch.")
    warnings.warn(
        f"dtype={name!r} on a CPU without {name} matrix instructions (torch.ops.mkldnn reports none): "
        f"the model runs several times slower than in float32 here. Leave dtype unset (float32 on "
        "CPU) unless this CPU has AVX512-BF16 or AMX.",
        QwenRerankWarning,
        stacklevel=3,
    )


def default_batch_tokens(device: torch.device, dtype: torch.dtype, intermediate_size: int) -> int:
    """The default ``max_batch_tokens``: 16384 on a GPU; on CPU, about 12 MiB per activation.

    On CPU a batch of a thousand tokens already keeps the matrix units busy,
    and activations of around 12 MiB are reused by the memory allocator rather
    than mapped afresh from the OS (and page-faulted in) at every layer. That
    gives 1024 tokens for Qwen3-Reranker-0.6B in float32 and 2048 in bfloat16,
    fewer for the larger models.
    """
    if device.type != "cpu":
        return 16384
    tokens = (12 << 20) // (max(intermediate_size, 1) * dtype.itemsize)
    return max(256, min(4096, 1 << max(tokens.bit_length() - 1, 0)))


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
