"""The local backend: a Qwen3-Reranker checkpoint run with transformers and PyTorch."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx

from qwen_rerank._batching import plan_batches
from qwen_rerank._cache import ScoreCache
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, MissingDependencyError, ModelLoadError, OutOfMemoryError
from qwen_rerank.prompt import DEFAULT_MODEL, PromptTokenizer

try:
    import torch
    import transformers
    from tqdm.auto import tqdm

    from qwen_rerank._scorer import PrefixState, YesNoScorer, is_out_of_memory
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        f"LocalReranker needs torch and transformers ({exc.name} is missing). "
        'Install them with: pip install "qwen-rerank[local]"'
    ) from exc

__all__ = [
    "LocalReranker",
    "check_model_source",
    "default_batch_tokens",
    "quiet_progress_bars",
    "resolve_device",
    "resolve_dtype",
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


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_HUB_PROBE_SECONDS = 3.0
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_source(model: str | os.PathLike[str], revision: str | None = None) -> tuple[str, bool]:
    """Where ``model`` loads from: ``(folder or hub id, local_files_only)``; a plain error if nowhere.

    A URL, a folder that does not exist or holds no checkpoint, and a hub id
    that cannot be fetched (offline, or the hub unreachable within a few
    seconds, and not in the local cache) each raise with the fix. A cached hub
    id loads from the cache when the hub cannot be reached.
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(f"model must be a hub id or a local folder, got {model!r}.")
    if model.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"model={model!r} is a URL, not a model. To score with a vLLM server there, pass it as "
            "base_url= (create_reranker(base_url=URL) or VLLMReranker(URL)), "
            "or --base-url on the command line."
        )
    folder = Path(model).expanduser()
    if folder.is_dir():
        _check_model_folder(folder)
        return str(folder), True
    if folder.exists():
        raise ModelLoadError(f"{model!r} is a file; pass the folder that holds the checkpoint.")
    if not _HUB_ID.fullmatch(model) or model.startswith("."):
        raise ModelLoadError(
            f"No such folder: {model!r}. Pass an existing checkpoint folder, or a hub id such as "
            "'Qwen/Qwen3-Reranker-0.6B'."
        ) from FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), model)
    return model, _hub_offline_check(model, revision)


def _check_model_folder(folder: Path) -> None:
    names = {item.name for item in folder.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names.intersection(_WEIGHT_FILES) and not any(n.endswith(".safetensors") for n in names):
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        missing.append("tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    if missing:
        raise ModelLoadError(
            f"{str(folder)!r} is not a model checkpoint: it has no {', no '.join(missing)}. Pass the folder "
            "that save_pretrained() or `hf download Qwen/Qwen3-Reranker-0.6B --local-dir DIR` wrote."
        )


def _hub_offline_check(model: str, revision: str | None) -> bool:
    """True to load ``model`` from the local cache only; raises when neither cache nor hub can serve it."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str)
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        reason = "HF_HUB_OFFLINE is set"
    else:
        endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
        try:
            httpx.head(endpoint, timeout=_HUB_PROBE_SECONDS, trust_env=True)
            return False
        except httpx.HTTPError as exc:
            reason = f"{endpoint} cannot be reached ({type(exc).__name__})"
    if cached:
        return True
    raise ModelLoadError(
        f"Cannot download {model!r}: {reason}, and it is not in the local Hugging Face cache. Pass a "
        "local checkpoint folder (download it once where the hub is reachable, e.g. `hf download "
        f"{model} --local-dir DIR`), or, for tests, the tiny model of "
        "qwen_rerank.testing.make_tiny_reranker()."
    )


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' and the hub's progress bars inside the block, then restore them as they were.

    Logging levels and handlers are left alone.
    """
    hub_utils: Any = importlib.import_module("huggingface_hub.utils")
    tlog: Any = transformers.utils.logging
    if not tlog.is_progress_bar_enabled():
        yield
        return
    hub_was_disabled = hub_utils.are_progress_bars_disabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.enable_progress_bar()
        if hub_was_disabled:
            hub_utils.disable_progress_bars()


class LocalReranker(Reranker):
    """Qwen3-Reranker run in this process with transformers.

    Scores equal the model card's: the prompt of :mod:`qwen_rerank.prompt`,
    and ``softmax([logit("no"), logit("yes")])[1]`` at the last position, in
    float32. They are computed faster than the model card's loop, with the same
    result (within 1e-5 in float32):

    - of the 151,669-wide vocabulary head only the "no" and "yes" rows are
      kept (``self.model`` holds the cut head), and they are applied at each
      prompt's last position only;
    - prompts are sorted by length and batched under a token budget, so little
      padding is computed, and scores come back in input order;
    - the prefix every prompt of a call shares (system prompt, instruction,
      query) is run once, and each document continues its key/value cache;
    - identical documents in one call are scored once.

    One instance may be used from many threads and from async code at once:
    forward passes take turns (one at a time per instance), and ``ascore`` /
    ``arerank`` run in a worker thread, never blocking the event loop.

    Args:
        model: A hub id (``"Qwen/Qwen3-Reranker-4B"``) or a local checkpoint
            folder (a ``str`` or any ``os.PathLike``, e.g. a ``pathlib.Path``).
            A hub id is downloaded, or read from the Hugging Face cache when
            the hub cannot be reached (checked within a few seconds).
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a torch.device.
            ``None`` picks cuda, then mps, then cpu. A device this machine
            lacks raises :class:`InvalidInputError` before anything loads.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch.dtype.
            ``None`` picks bfloat16 (float16 where bf16 is unsupported) on a GPU
            and float32 on CPU. ``"bfloat16"`` works on CPU too, and is several
            times faster on CPUs with AMX or AVX512-BF16 (see the docs' Speed
            section for the score drift).
        max_length: Most tokens one prompt may take. Longer documents are
            truncated from their end; the prompt's fixed prefix and suffix are
            never cut. Must exceed the fixed prompt's length (about 50 tokens).
        instruction: Default task instruction; see :data:`DEFAULT_INSTRUCTION`.
        max_batch_tokens: Most tokens one forward pass holds: each row's
            padded length plus the shared prefix it continues. Documents are
            sorted by length and grouped under this budget; a longer document
            runs alone. ``None`` picks 16384 on a GPU and, on
            CPU, what keeps activations near 12 MiB (1024 tokens for the 0.6B
            model in float32, 2048 in bfloat16); see :func:`default_batch_tokens`.
            On device out-of-memory a batch is halved and retried, down to one
            document, before :class:`OutOfMemoryError` is raised.
        trust_remote_code: Passed to transformers. Off by default.
        revision: Hub revision (branch, tag or commit) to load.
        prefix_reuse: Run the shared prompt prefix once per call and reuse its
            key/value cache for every document (on by default). Turning it off
            runs each full prompt; scores agree within float rounding.
        cache_size: Keep the scores of this many most recent
            (instruction, query, document) triples and answer repeats without
            the model; each entry keeps its texts alive. ``0`` (the default)
            turns the cache off. :meth:`clear_cache` empties it.
        show_progress: Show a tqdm progress bar (on stderr) for calls that take
            more than one forward pass. Off by default.

    Raises:
        ModelLoadError: The model or its tokenizer cannot be found or loaded:
            no such folder, a folder without model files, a hub id that
            cannot be downloaded.
        InvalidInputError: A bad argument: a URL as ``model`` (use
            :class:`~qwen_rerank.VLLMReranker`), a device this machine lacks.
        MissingDependencyError: torch or transformers is not installed
            (``pip install "qwen-rerank[local]"``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: Any = None,
        dtype: Any = None,
        max_length: int = 8192,
        instruction: str | None = None,
        max_batch_tokens: int | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        prefix_reuse: bool = True,
        cache_size: int = 0,
        show_progress: bool = False,
    ) -> None:
        super().__init__(instruction=instruction)
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidInputError(
                f"cache_size must be an int >= 0 (0 turns the cache off), got {cache_size!r}."
            )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_length = check_positive_int("max_length", max_length)
        if max_batch_tokens is not None:
            check_positive_int("max_batch_tokens", max_batch_tokens)
        self.prefix_reuse = bool(prefix_reuse)
        self.show_progress = bool(show_progress)
        self._cache = ScoreCache(cache_size) if cache_size else None
        self.model_name = os.fspath(model) if isinstance(model, os.PathLike) else model
        source, local_only = check_model_source(model, revision)
        try:
            with quiet_progress_bars():
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    source,
                    trust_remote_code=trust_remote_code,
                    revision=revision,
                    local_files_only=local_only,
                )
                hf_model: torch.nn.Module = transformers.AutoModelForCausalLM.from_pretrained(
                    source,
                    dtype=self.dtype,
                    trust_remote_code=trust_remote_code,
                    revision=revision,
                    local_files_only=local_only,
                )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load model {model!r}: {exc}. Pass a local checkpoint folder or a hub id "
                "that this machine can download."
            ) from exc
        self.prompt_tokenizer = PromptTokenizer(tokenizer)
        self.prompt_tokenizer.check_max_length(self.max_length)
        self.model = hf_model.to(self.device).eval()
        self.max_batch_tokens: int = max_batch_tokens or default_batch_tokens(
            self.device, self.dtype, getattr(self.model.config, "intermediate_size", 3072)
        )
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        try:
            self._scorer = YesNoScorer(
                self.model,
                yes_id=self.prompt_tokenizer.yes_id,
                no_id=self.prompt_tokenizer.no_id,
                pad_id=pad_id,
                device=self.device,
            )
        except TypeError as exc:
            raise ModelLoadError(f"Model {model!r} cannot be used as a reranker: {exc}") from exc
        self._forward_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"LocalReranker(model={self.model_name!r}, device='{self.device}', "
            f"dtype={str(self.dtype).removeprefix('torch.')}, max_length={self.max_length})"
        )

    @property
    def cache_size(self) -> int:
        """Most entries the score cache keeps; 0 when it is off."""
        return 0 if self._cache is None else self._cache.maxsize

    def clear_cache(self) -> None:
        """Forget every cached score (a no-op when the cache is off)."""
        if self._cache is not None:
            self._cache.clear()

    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        distinct = list(dict.fromkeys(documents))
        known: dict[str, float] = {}
        if self._cache is not None:
            cached = self._cache.get_many([self._cache_key(query, doc, instruction) for doc in distinct])
            known = {doc: score for doc, score in zip(distinct, cached, strict=True) if score is not None}
        missing = [doc for doc in distinct if doc not in known]
        if missing:
            computed = self._compute(query, missing, instruction)
            known.update(zip(missing, computed, strict=True))
            if self._cache is not None:
                self._cache.put_many(
                    [
                        (self._cache_key(query, doc, instruction), score)
                        for doc, score in zip(missing, computed, strict=True)
                    ]
                )
        return [known[doc] for doc in documents]

    def _cache_key(self, query: str, document: str, instruction: str) -> tuple[int, str, str, str]:
        return (self.max_length, instruction, query, document)

    def _compute(self, query: str, documents: list[str], instruction: str) -> list[float]:
        """Scores of distinct documents, in order."""
        pt = self.prompt_tokenizer
        prompts = pt.encode_pairs(query, documents, instruction, self.max_length)
        work = _Work(prompts=prompts, rows=list(prompts), scores=[0.0] * len(prompts))
        shared: list[int] = []
        if self.prefix_reuse:
            head = pt.encode_head(query, instruction)
            # A prompt truncated into its query does not start with the head; it runs whole.
            shared = [i for i, p in enumerate(prompts) if len(p) > len(head) and p[: len(head)] == head]
            for i in shared:
                work.rows[i] = prompts[i][len(head) :]
            if shared:
                try:
                    with self._forward_lock:
                        work.prefix = self._scorer.prefix(head)
                except Exception as exc:
                    self._raise_out_of_memory(exc, f"the instruction and query ({len(head)} prompt tokens)")
        whole = sorted(set(range(len(prompts))).difference(shared))
        prefix_length = 0 if work.prefix is None else work.prefix.length
        jobs = [(batch, True) for batch in self._plan(shared, work.rows, prefix_length)]
        jobs += [(batch, False) for batch in self._plan(whole, work.rows, 0)]
        with tqdm(
            total=len(prompts), desc="Reranking", unit="doc", disable=not self.show_progress or len(jobs) < 2
        ) as progress:
            for batch, uses_prefix in jobs:
                self._run_batch(batch, work, uses_prefix)
                progress.update(len(batch))
        return work.scores

    def _plan(self, indices: list[int], rows: list[list[int]], prefix_length: int) -> list[list[int]]:
        """``indices`` grouped into batches under the token budget, longest rows first."""
        lengths = [len(rows[i]) for i in indices]
        batches = plan_batches(lengths, self.max_batch_tokens, shared=prefix_length)
        return [[indices[j] for j in batch] for batch in batches]

    def _run_batch(self, batch: list[int], work: _Work, uses_prefix: bool) -> None:
        """Score ``batch`` into ``work.scores``; on out-of-memory, halve it and retry, down to one row."""
        values: list[float] | None = None
        try:
            with self._forward_lock:
                values = self._scorer.score_rows(
                    [work.rows[i] for i in batch], work.prefix if uses_prefix else None
                )
        except Exception as exc:
            if len(batch) == 1 or not is_out_of_memory(exc):
                self._raise_out_of_memory(exc, f"a document of {len(work.prompts[batch[0]])} prompt tokens")
        if values is None:
            # Retried here, after the except block, so the failed attempt's tensors are freed first.
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            middle = len(batch) // 2
            self._run_batch(batch[:middle], work, uses_prefix)
            self._run_batch(batch[middle:], work, uses_prefix)
            return
        for i, value in zip(batch, values, strict=True):
            work.scores[i] = value

    def _raise_out_of_memory(self, exc: Exception, what: str) -> NoReturn:
        """Re-raise ``exc``; as :class:`OutOfMemoryError` naming ``what`` if the device ran out of memory."""
        if not is_out_of_memory(exc):
            raise exc
        raise OutOfMemoryError(
            f"The {self.device.type} device ran out of memory scoring {what}, even alone. Lower "
            f"max_length (now {self.max_length}) so long documents are truncated, load the model in a "
            "smaller dtype, or free device memory."
        ) from exc


@dataclass
class _Work:
    """One call's tokenized prompts, the rows the model runs, the shared prefix and the scores."""

    prompts: list[list[int]]
    rows: list[list[int]]
    scores: list[float]
    prefix: PrefixState | None = None
