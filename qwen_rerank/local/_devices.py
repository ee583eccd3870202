"""Where the local model runs: device, dtype and the default batch budget (threads: `_threads`)."""

from __future__ import annotations

from typing import Any

import torch

from qwen_rerank._warnings import warn
from qwen_rerank.exceptions import InvalidInputError

__all__ = [
    "cpu_has_native",
    "default_batch_tokens",
    "resolve_device",
    "resolve_dtype",
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
    warn(
        f"dtype={name!r} on a CPU without {name} matrix instructions (torch.ops.mkldnn reports none): "
        f"the model runs several times slower than in float32 here. Leave dtype unset (float32 on "
        "CPU) unless this CPU has AVX512-BF16 or AMX."
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
