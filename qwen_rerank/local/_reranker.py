"""The local backend: a Qwen3-Reranker checkpoint run with transformers and PyTorch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx

from qwen_rerank._chunking import LongDocumentsMode
from qwen_rerank._many import Progress, Request
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, MissingDependencyError, ModelLoadError, OutOfMemoryError
from qwen_rerank.local._batching import plan_batches, prefix_pays
from qwen_rerank.local._cache import ScoreCache
from qwen_rerank.prompt import DEFAULT_MODEL, PromptTokenizer

try:
    import torch
    import transformers
    from tqdm.auto import tqdm

    from qwen_rerank.local._scorer import PrefixState, YesNoScorer, is_out_of_memory
    from qwen_rerank.local._seq_cls import load_scoring_model
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

    Scores equal the model card's: the prompt of `qwen_rerank.prompt`,
    and ``softmax([logit("no"), logit("yes")])[1]`` at the last position, in
    float32. They are computed faster than the model card's loop, with the same
    result (within 1e-5 in float32):

    - of the 151,669-wide vocabulary head only the "no" and "yes" rows are
      kept (``self.model`` holds the cut head), and they are applied at each
      prompt's last position only;
    - prompts are sorted by length and batched under a token budget, so little
      padding is computed, and scores come back in input order;
    - the prefix every prompt of a query shares (system prompt, instruction,
      query) is run once, and each document continues its key/value cache,
      when the query has enough documents for that to pay; otherwise its whole
      prompts share batches with other queries' (see `score_many`);
    - identical documents of a query are scored once.

    One instance may be used from many threads and from async code at once:
    forward passes take turns (one at a time per instance), and ``ascore`` /
    ``arerank`` run in a worker thread, never blocking the event loop.

    Args:
        model: A hub id (``"Qwen/Qwen3-Reranker-4B"``) or a local checkpoint
            folder (a ``str`` or any ``os.PathLike``, e.g. a ``pathlib.Path``).
            A hub id is downloaded, or read from the Hugging Face cache when
            the hub cannot be reached (checked within a few seconds). A
            one-logit ``-seq-cls`` conversion (``Qwen3ForSequenceClassification``,
            as TEI and Infinity serve) loads too and scores ``sigmoid(logit)``,
            the same score (see ``docs/tei-infinity.md``).
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a torch.device.
            ``None`` picks cuda, then mps, then cpu. A device this machine lacks
            raises [`InvalidInputError`][qwen_rerank.exceptions.InvalidInputError] before
            anything loads.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch.dtype.
            ``None`` picks bfloat16 (float16 where bf16 is unsupported) on a GPU
            and float32 on CPU. ``"bfloat16"`` works on CPU too, and is several
            times faster on CPUs with AMX or AVX512-BF16 (see the docs' Speed
            section for the score drift).
        max_length: Most tokens one prompt may take. Longer documents are
            truncated from their end; the prompt's fixed prefix and suffix are
            never cut. Must exceed the fixed prompt's length (about 50 tokens).
        instruction: Default task instruction; see [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION].
        max_batch_tokens: Most tokens one forward pass holds: each row's
            padded length plus the shared prefix it continues. Documents are
            sorted by length and grouped under this budget; a longer document
            runs alone. ``None`` picks 16384 on a GPU and, on
            CPU, what keeps activations near 12 MiB (1024 tokens for the 0.6B
            model in float32, 2048 in bfloat16); see `default_batch_tokens`.
            On device out-of-memory a batch is halved and retried, down to one
            document, before [`OutOfMemoryError`][qwen_rerank.exceptions.OutOfMemoryError] is raised.
        trust_remote_code: Passed to transformers. Off by default.
        revision: Hub revision (branch, tag or commit) to load.
        prefix_reuse: Run the shared prompt prefix once per call and reuse its
            key/value cache for every document (on by default). Turning it off
            runs each full prompt; scores agree within float rounding.
        cache_size: Keep the scores of this many most recent
            (instruction, query, document) triples and answer repeats without
            the model; each entry keeps its texts alive. ``0`` (the default)
            turns the cache off. `clear_cache` empties it.
        show_progress: Show a tqdm progress bar (on stderr) for calls that take
            more than one forward pass. Off by default.
        long_documents: ``"truncate"`` (the default) cuts a prompt longer than
            ``max_length`` at its end, and ``rerank`` marks the result
            ``truncated``; ``"chunk"`` scores overlapping windows of such a
            document, in the same batches as the other documents, and keeps
            the best window's score and ``span`` (see ``docs/long-documents.md``).
        chunk_tokens: Chunk mode: document tokens per window. ``None`` (the
            default) takes the most that fit beside the instruction and query.
        chunk_overlap: Chunk mode: tokens that neighbouring windows share.
            ``None`` takes 64, or a quarter of the window when that is less.
        compile: Run the model through ``torch.compile`` (dynamic shapes).
            Off by default. It fuses the element-wise work between the matrix
            multiplies (in bfloat16 on CPU, about 1.3x faster on a quiet machine
            and 2x under load; see the docs' Speed page), but the first calls
            compile, for up to a minute or more per kind of forward pass.
            Compiled kernels are kept on disk
            (``$TORCHINDUCTOR_CACHE_DIR``, by default ``torch-compile`` in the
            per-user cache folder ``~/.cache/qwen-rerank``), so a later process
            starts faster. Needs a C++ compiler on CPU. Scores equal the
            uncompiled ones within float rounding.

    Raises:
        ModelLoadError: The model or its tokenizer cannot be found or loaded:
            no such folder, a folder without model files, a hub id that
            cannot be downloaded.
        InvalidInputError: A bad argument: a URL as ``model`` (use
            [`VLLMReranker`][qwen_rerank.VLLMReranker]), a device this machine lacks.
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
        long_documents: LongDocumentsMode = "truncate",
        chunk_tokens: int | None = None,
        chunk_overlap: int | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            instruction=instruction,
            long_documents=long_documents,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
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
                hf_model, head_rows = load_scoring_model(
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
                yes_id=self.prompt_tokenizer.yes_id if head_rows is None else head_rows[1],
                no_id=self.prompt_tokenizer.no_id if head_rows is None else head_rows[0],
                pad_id=pad_id,
                device=self.device,
                compile=bool(compile),
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
    def served_model(self) -> str:
        """The checkpoint this backend loaded: its hub id or local folder."""
        return self.model_name

    @property
    def cache_size(self) -> int:
        """Most entries the score cache keeps; 0 when it is off."""
        return 0 if self._cache is None else self._cache.maxsize

    def clear_cache(self) -> None:
        """Forget every cached score (a no-op when the cache is off)."""
        if self._cache is not None:
            self._cache.clear()

    def _prompt_rule(self) -> tuple[PromptTokenizer, int]:
        return self.prompt_tokenizer, self.max_length

    def _score(self, query: str, documents: list[str], instruction: str) -> list[float]:
        return self._score_many([(query, documents)], instruction, None)[0]

    async def _ascore_many(
        self, requests: list[Request], instruction: str, progress: Progress
    ) -> list[list[float]]:
        return await asyncio.to_thread(self._score_many, requests, instruction, progress)

    def _score_many(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Scores per request: cached ones looked up, each request's distinct rest computed together."""
        known = [self._cached(query, documents, instruction) for query, documents in requests]
        missing = [
            (query, [doc for doc in dict.fromkeys(documents) if doc not in hits])
            for (query, documents), hits in zip(requests, known, strict=True)
        ]
        tracker = _Tracker(requests, [len(docs) for _, docs in missing], progress)
        computed = self._compute_many(missing, instruction, tracker)
        for (query, docs), scores, hits in zip(missing, computed, known, strict=True):
            hits.update(zip(docs, scores, strict=True))
            if self._cache is not None and docs:
                self._cache.put_many(
                    [
                        (self._cache_key(query, doc, instruction), s)
                        for doc, s in zip(docs, scores, strict=True)
                    ]
                )
        return [
            [hits[doc] for doc in documents] for (_, documents), hits in zip(requests, known, strict=True)
        ]

    def _cached(self, query: str, documents: list[str], instruction: str) -> dict[str, float]:
        """The cached scores of ``query``'s distinct documents (empty when the cache is off)."""
        if self._cache is None:
            return {}
        distinct = list(dict.fromkeys(documents))
        cached = self._cache.get_many([self._cache_key(query, doc, instruction) for doc in distinct])
        return {doc: score for doc, score in zip(distinct, cached, strict=True) if score is not None}

    def _cache_key(self, query: str, document: str, instruction: str) -> tuple[int, str, str, str]:
        return (self.max_length, instruction, query, document)

    def _compute_many(
        self, requests: list[Request], instruction: str, tracker: _Tracker
    ) -> list[list[float]]:
        """Scores of each request's (distinct) documents, in order, from one plan of forward passes."""
        groups = self._group(requests, instruction)
        jobs = [(work, batch) for work in groups for batch in self._plan(work)]
        scores: list[list[float]] = [[0.0] * len(docs) for _, docs in requests]
        show = self.show_progress and tracker.progress is None and len(jobs) >= 2
        with tqdm(
            total=sum(len(w.prompts) for w in groups), desc="Reranking", unit="doc", disable=not show
        ) as bar:
            for k, (work, batch) in enumerate(jobs):
                if work.head is not None and work.prefix is None:
                    work.prefix = self._prefix(work.head)
                self._run_batch(batch, work, work.head is not None)
                if k + 1 == len(jobs) or jobs[k + 1][0] is not work:
                    work.prefix = None  # free the prefix's key/value states once its rows are done
                bar.update(len(batch))
                tracker.scored([work.slots[i][0] for i in batch])
        for work in groups:
            for (request, document), value in zip(work.slots, work.scores, strict=True):
                scores[request][document] = value
        return scores

    def _group(self, requests: list[Request], instruction: str) -> list[_Work]:
        """Each request's prompts: in a group of its own continuing its prefix, where that pays,
        or in one pool of whole prompts that requests share (see `prefix_pays`)."""
        pt = self.prompt_tokenizer
        groups: list[_Work] = []
        pool = _Work(prompts=[], rows=[], scores=[])
        for request, (query, documents) in enumerate(requests):
            if not documents:
                continue
            prompts = pt.encode_pairs(query, documents, instruction, self.max_length)
            shared: list[int] = []
            if self.prefix_reuse:
                head = pt.encode_head(query, instruction)
                # A prompt truncated into its query does not start with the head; it runs whole. So
                # does one that fills a batch alone: reuse would save a sliver, at the price of a mask.
                alone = self.max_batch_tokens // 2
                shared = [
                    i for i, p in enumerate(prompts) if len(head) < len(p) <= alone and p[: len(head)] == head
                ]
                tails = [len(prompts[i]) - len(head) for i in shared]
                if shared and prefix_pays(len(head), tails, self.max_batch_tokens):
                    group = _Work(prompts=[], rows=[], scores=[], head=head)
                    for i in shared:
                        group.add(prompts[i], prompts[i][len(head) :], (request, i))
                    groups.append(group)
                else:
                    shared = []
            for i in sorted(set(range(len(prompts))).difference(shared)):
                pool.add(prompts[i], prompts[i], (request, i))
        if pool.prompts:
            groups += self._share_pool(pool)
        # Longest rows first, as within each group: the biggest activations are allocated first.
        return sorted(groups, key=lambda work: -max(map(len, work.rows)))

    def _share_pool(self, pool: _Work) -> list[_Work]:
        """The pool's prompts, continuing the head they all share where that pays.

        Prompts of different queries still share the system prompt and the
        instruction, about half of a short prompt: that head then runs once for
        the whole pool. Rows that fill a batch alone, or a pool where reuse does
        not pay (see `prefix_pays`), run whole.
        """
        alone = self.max_batch_tokens // 2
        short = [k for k, prompt in enumerate(pool.prompts) if len(prompt) <= alone]
        head = _common_head([pool.prompts[k] for k in short]) if self.prefix_reuse and len(short) > 1 else []
        tails = [len(pool.prompts[k]) - len(head) for k in short]
        if not head or not prefix_pays(len(head), tails, self.max_batch_tokens):
            return [pool]
        shared = _Work(prompts=[], rows=[], scores=[], head=head)
        whole = _Work(prompts=[], rows=[], scores=[])
        continuing = set(short)
        for k, (prompt, slot) in enumerate(zip(pool.prompts, pool.slots, strict=True)):
            if k in continuing:
                shared.add(prompt, prompt[len(head) :], slot)
            else:
                whole.add(prompt, prompt, slot)
        return [shared, whole] if whole.prompts else [shared]

    def _plan(self, work: _Work) -> list[list[int]]:
        """``work``'s rows grouped into batches under the token budget, longest rows first."""
        shared = 0 if work.head is None else len(work.head)
        return plan_batches([len(row) for row in work.rows], self.max_batch_tokens, shared=shared)

    def _prefix(self, head: list[int]) -> PrefixState:
        try:
            with self._forward_lock:
                return self._scorer.prefix(head)
        except Exception as exc:
            self._raise_out_of_memory(exc, f"the instruction and query ({len(head)} prompt tokens)")

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
        """Re-raise ``exc``; as `OutOfMemoryError` naming ``what`` if the device ran out of memory."""
        if not is_out_of_memory(exc):
            raise exc
        raise OutOfMemoryError(
            f"The {self.device.type} device ran out of memory scoring {what}, even alone. Lower "
            f"max_length (now {self.max_length}) so long documents are truncated, load the model in a "
            "smaller dtype, or free device memory."
        ) from exc


def _common_head(prompts: list[list[int]]) -> list[int]:
    """The longest token prefix all ``prompts`` share, leaving each at least one token of its own."""
    first, length = prompts[0], min(map(len, prompts)) - 1
    for prompt in prompts[1:]:
        same = 0
        while same < length and prompt[same] == first[same]:
            same += 1
        length = same
    return first[:length]


@dataclass
class _Work:
    """Prompts that run together: their rows, scores, and the prefix (``head``) the rows continue.

    ``head`` is ``None`` for whole prompts; ``slots`` says which (request,
    document) each prompt scores.
    """

    prompts: list[list[int]]
    rows: list[list[int]]
    scores: list[float]
    prefix: PrefixState | None = None
    head: list[int] | None = None
    slots: list[tuple[int, int]] = field(default_factory=list)

    def add(self, prompt: list[int], row: list[int], slot: tuple[int, int]) -> None:
        self.prompts.append(prompt)
        self.rows.append(row)
        self.scores.append(0.0)
        self.slots.append(slot)


class _Tracker:
    """Turns scored prompts into ``progress(queries, documents)`` reports.

    A request counts as a query done when its last prompt is scored; its
    documents are counted as their prompts are scored, plus, at that moment,
    its repeats and cached documents, which need no prompt.
    """

    def __init__(self, requests: list[Request], pending: list[int], progress: Progress | None) -> None:
        self.progress = progress
        self._pending = list(pending)
        self._free = [len(documents) - count for (_, documents), count in zip(requests, pending, strict=True)]
        if progress is not None:
            ready = [i for i, count in enumerate(pending) if count == 0]
            if ready:
                progress(len(ready), sum(self._free[i] for i in ready))

    def scored(self, requests: list[int]) -> None:
        """Report one scored prompt for each entry of ``requests`` (request indices)."""
        if self.progress is None:
            return
        finished = 0
        documents = len(requests)
        for i in requests:
            self._pending[i] -= 1
            if self._pending[i] == 0:
                finished += 1
                documents += self._free[i]
        self.progress(finished, documents)
