"""The forward pass: token ids in, P("yes") out, computing only what the score needs.

The score is the model card's ``softmax([logit_no, logit_yes])[1]`` in float32,
and nothing else of the 151,669-wide vocabulary head is ever computed: the head
is cut to its "no" and "yes" rows (as vLLM does when it serves the reranker as
a classifier), and the model runs with ``logits_to_keep=1``, so those two
logits are taken at the last position only.

Rows are left-padded, as in the model card. A shared prefix (system prompt,
instruction, query) runs once into a key/value cache; each batch of document
tails then continues that cache, expanded to the batch's rows. Each row's
real tokens take the positions right after the prefix, and its padding, which
sits between the prefix and the tail, is masked out. Rows with no prefix and
no padding (a long prompt that runs alone) get no mask at all: a plain causal
pass, for which SDPA picks its fused kernels.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import transformers

from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import OutOfMemoryError

__all__ = [
    "PrefixState",
    "YesNoScorer",
    "compile_cache_dir",
    "compiled_forward",
    "is_out_of_memory",
    "raise_out_of_memory",
    "score_halving",
]


# torch.OutOfMemoryError is torch >= 2.5's name for torch.cuda.OutOfMemoryError.
_OUT_OF_MEMORY: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (torch's own class, or MPS's RuntimeError)."""
    if isinstance(exc, _OUT_OF_MEMORY):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc)


def score_halving(
    batch: list[int],
    score: Callable[[list[int]], list[float]],
    fail: Callable[[Exception, int], NoReturn],
    device: torch.device,
) -> list[float]:
    """``score(batch)``; on device out-of-memory, its halves scored apart, and theirs, down to one row.

    Args:
        batch: The rows of one forward pass.
        score: Runs rows in one pass and returns their scores in order.
        fail: Raises for ``(error, row)``: any error other than out-of-memory,
            or out-of-memory on one row alone (see `raise_out_of_memory`).
        device: Where the model runs (a CUDA cache is emptied before a retry).

    Returns:
        The scores of `batch`, in its order.
    """
    values: list[float] | None = None
    try:
        values = score(batch)
    except Exception as exc:
        if len(batch) == 1 or not is_out_of_memory(exc):
            fail(exc, batch[0])
    if values is not None:
        return values
    # Retried here, after the except block, so the failed attempt's tensors are freed first.
    if device.type == "cuda":
        torch.cuda.empty_cache()
    middle = len(batch) // 2
    return score_halving(batch[:middle], score, fail, device) + score_halving(
        batch[middle:], score, fail, device
    )


def raise_out_of_memory(exc: Exception, device: torch.device, what: str, max_length: int) -> NoReturn:
    """Re-raise ``exc``; as `OutOfMemoryError` naming ``what`` if the device ran out of memory."""
    if not is_out_of_memory(exc):
        raise exc
    raise OutOfMemoryError(
        f"The {device.type} device ran out of memory scoring {what}, even alone. Lower "
        f"max_length (now {max_length}) so long documents are truncated, load the model in a "
        "smaller dtype, or free device memory."
    ) from exc


def compiled_forward(model: Any) -> Any:
    """``torch.compile(model, dynamic=True)``, its compiled kernels cached on disk across processes.

    Shapes are dynamic, so batches of new lengths reuse the compiled graphs
    instead of compiling afresh. The first forward passes compile (about a
    minute per kind of pass on a small CPU; a prefix, rows continuing it and
    whole prompts are three kinds); a later process finds the kernels in
    torch's on-disk cache, ``$TORCHINDUCTOR_CACHE_DIR``. Unless the user
    chose that folder, it is set to `compile_cache_dir` (torch writes its
    own default, a temporary folder, into the variable when it first uses it).
    """
    current, default = os.environ.get("TORCHINDUCTOR_CACHE_DIR"), _torch_default_cache_dir()
    if current is None or (default and os.path.abspath(current) == os.path.abspath(default)):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    return torch.compile(model, dynamic=True)


def _torch_default_cache_dir() -> str:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - another torch layout: leave the variable alone
        return ""
    folder: str = default_cache_dir()
    return folder


def compile_cache_dir() -> Path:
    """The default on-disk cache of compiled kernels: ``torch-compile`` in the per-user cache folder.

    That folder is ``$QWEN_RERANK_CACHE`` if set, else ``$XDG_CACHE_HOME/qwen-rerank``
    (by default ``~/.cache/qwen-rerank``; ``%LOCALAPPDATA%\\qwen-rerank`` on Windows),
    the folder `qwen_rerank.testing.tiny_model_cache_dir` names.
    """
    return user_cache_dir() / "torch-compile"


@dataclass(frozen=True)
class PrefixState:
    """The key/value states of a shared prompt prefix, one (keys, values) pair per layer."""

    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]


class YesNoScorer:
    """Scores token-id prompts with a causal LM: P("yes") at each prompt's last token.

    Args:
        model: A transformers causal LM (``Qwen3ForCausalLM``) in eval mode on
            ``device``. Its output head is replaced by one that holds only the
            "no" and "yes" rows, so its logits are ``[logit_no, logit_yes]``.
        yes_id, no_id: Token ids of "yes" and "no".
        pad_id: Any valid token id; it fills masked positions.
        device: Where the model lives.
        compile: Run forward passes through ``torch.compile(model, dynamic=True)``
            (see `compiled_forward`); the model object itself is unchanged.

    Not thread-safe: callers serialise forward passes.
    """

    def __init__(
        self,
        model: Any,
        *,
        yes_id: int,
        no_id: int,
        pad_id: int,
        device: torch.device,
        compile: bool = False,
    ) -> None:
        parameters = inspect.signature(model.forward).parameters
        head = model.get_output_embeddings()
        if "logits_to_keep" not in parameters or not isinstance(head, torch.nn.Linear):
            raise TypeError(
                f"{type(model).__name__} is not a causal LM with a linear vocabulary head and a "
                "logits_to_keep argument (like Qwen3ForCausalLM)."
            )
        pair = torch.nn.Linear(
            head.in_features,
            2,
            bias=head.bias is not None,
            device=head.weight.device,
            dtype=head.weight.dtype,
        )
        with torch.no_grad():
            pair.weight.copy_(head.weight[[no_id, yes_id]])
            if head.bias is not None:
                pair.bias.copy_(head.bias[[no_id, yes_id]])
        model.set_output_embeddings(pair)
        self.model = model
        self.forward: Any = compiled_forward(model) if compile else model
        self.device = device
        self.pad_id = pad_id
        # transformers 5 renamed ``past_key_values`` to ``cache``.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def prefix(self, ids: list[int]) -> PrefixState:
        """Run ``ids`` once and keep their key/value states for `score_rows`."""
        with torch.inference_mode():
            output = self.forward(
                input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1
            )
        cache = getattr(output, "cache", None) or output.past_key_values
        if hasattr(cache, "layers"):
            states = [(layer.keys, layer.values) for layer in cache.layers]
        else:  # transformers before the cache-layer refactor
            states = list(zip(cache.key_cache, cache.value_cache, strict=True))
        return PrefixState(len(ids), states)

    def score_rows(self, rows: list[list[int]], prefix: PrefixState | None = None) -> list[float]:
        """P("yes") for each row of token ids; with ``prefix``, each row continues that prefix."""
        width = max(len(row) for row in rows)
        before = 0 if prefix is None else prefix.length
        ids = torch.tensor([[self.pad_id] * (width - len(row)) + row for row in rows])
        pads = torch.tensor([[width - len(row)] for row in rows])
        columns = torch.arange(before + width)
        mask = ((columns < before) | (columns >= before + pads)).long()
        # Only a prefix needs a cache; without one, no layer's keys and values are kept.
        kwargs: dict[str, Any] = {"use_cache": prefix is not None}
        if prefix is not None:
            # Real tokens take the positions right after the prefix; padding is masked anyway.
            kwargs["position_ids"] = (before + torch.arange(width) - pads).clamp(min=0).to(self.device)
            kwargs[self._cache_arg] = transformers.DynamicCache(
                [(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1)) for k, v in prefix.layers]
            )
        # Nothing to mask without a prefix or padding: a plain causal pass takes SDPA's fused kernels.
        attention_mask = None if prefix is None and not pads.any() else mask.to(self.device)
        with torch.inference_mode():
            logits = self.forward(
                input_ids=ids.to(self.device),
                attention_mask=attention_mask,
                logits_to_keep=1,
                **kwargs,
            ).logits[:, -1, :]
            scores: list[float] = torch.softmax(logits.float(), dim=1)[:, 1].tolist()
        return scores
