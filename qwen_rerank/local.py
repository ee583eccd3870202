"""The local backend: a Qwen3-Reranker checkpoint run with transformers and PyTorch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, MissingDependencyError, ModelLoadError
from qwen_rerank.prompt import DEFAULT_MODEL, PromptTokenizer

try:
    import torch
    import transformers
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        f"LocalReranker needs torch and transformers ({exc.name} is missing). "
        'Install them with: pip install "qwen-rerank[local]"'
    ) from exc

__all__ = ["LocalReranker", "resolve_device", "resolve_dtype"]

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
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(
            f"device must be 'cpu', 'cuda', 'cuda:N', 'mps', a torch.device or None, got {device!r}."
        ) from exc


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


class LocalReranker(Reranker):
    """Qwen3-Reranker run in this process with transformers.

    Scores follow the model card exactly: the prompt of :mod:`qwen_rerank.prompt`,
    left padding, and ``softmax([logit("no"), logit("yes")])[1]`` at the last
    position, computed in float32.

    Args:
        model: A hub id (``"Qwen/Qwen3-Reranker-4B"``) or a local checkpoint folder.
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a torch.device.
            ``None`` picks cuda, then mps, then cpu.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch.dtype.
            ``None`` picks bfloat16 (float16 where bf16 is unsupported) on a GPU
            and float32 on CPU.
        max_length: Most tokens one prompt may take. Longer documents are
            truncated from their end; the prompt's fixed prefix and suffix are
            never cut. Must exceed the fixed prompt's length (about 60 tokens).
        instruction: Default task instruction; see :data:`DEFAULT_INSTRUCTION`.
        max_batch_tokens: Most tokens (padding included) in one forward pass.
            Documents are sorted by length and grouped under this budget.
            ``None`` picks a default for the device.
        trust_remote_code: Passed to transformers. Off by default.
        revision: Hub revision (branch, tag or commit) to load.

    Raises:
        ModelLoadError: The model or its tokenizer cannot be found or loaded.
        MissingDependencyError: torch or transformers is not installed
            (``pip install "qwen-rerank[local]"``).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: Any = None,
        dtype: Any = None,
        max_length: int = 8192,
        instruction: str | None = None,
        max_batch_tokens: int | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
    ) -> None:
        super().__init__(instruction=instruction)
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a hub id or a local path, got {model!r}.")
        self.model_name = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_length = check_positive_int("max_length", max_length)
        self.max_batch_tokens = (
            check_positive_int("max_batch_tokens", max_batch_tokens)
            if max_batch_tokens is not None
            else (16384 if self.device.type == "cuda" else 4096)
        )
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                model, padding_side="left", trust_remote_code=trust_remote_code, revision=revision
            )
            hf_model: torch.nn.Module = transformers.AutoModelForCausalLM.from_pretrained(
                model,
                dtype=self.dtype,
                trust_remote_code=trust_remote_code,
                revision=revision,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load model {model!r}: {exc}. Pass a local checkpoint folder or a hub id "
                "that this machine can download."
            ) from exc
        self.prompt_tokenizer = PromptTokenizer(tokenizer)
        self.prompt_tokenizer.check_max_length(self.max_length)
        self.model = hf_model.to(self.device).eval()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __repr__(self) -> str:
        return (
            f"LocalReranker(model={self.model_name!r}, device='{self.device}', "
            f"dtype={str(self.dtype).removeprefix('torch.')}, max_length={self.max_length})"
        )

    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        prompts = self.prompt_tokenizer.encode_pairs(query, documents, instruction, self.max_length)
        scores = [0.0] * len(prompts)
        for batch in self._batches(prompts):
            for i, value in zip(batch, self._forward([prompts[i] for i in batch]), strict=True):
                scores[i] = value
        return scores

    def _batches(self, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
        """Indices grouped by length so that padded batch size stays within the token budget."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            width = len(prompts[current[0]]) if current else len(prompts[i])
            if current and width * (len(current) + 1) > self.max_batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _forward(self, prompts: list[list[int]]) -> list[float]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        pt = self.prompt_tokenizer
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                logits_to_keep=1,
            ).logits[:, -1, :]
            pair = torch.stack([logits[:, pt.no_id], logits[:, pt.yes_id]], dim=1).float()
            scores: list[float] = torch.softmax(pair, dim=1)[:, 1].tolist()
            return scores
