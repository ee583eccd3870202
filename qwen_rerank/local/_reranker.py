"""The local backend: a Qwen3-Reranker checkpoint run with transformers and PyTorch."""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from tqdm.auto import tqdm

from qwen_rerank._chunking import LongDocumentsMode
from qwen_rerank._requests import Progress, Request, TextRequest, text_requests
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError, ModelLoadError
from qwen_rerank.local._batching import plan_batches, prefix_pays
from qwen_rerank.local._cache import ScoreCache
from qwen_rerank.local._devices import default_batch_tokens, resolve_device, resolve_dtype, warn_if_slow
from qwen_rerank.local._loading import Source, find_source, load_scoring_model, load_tokenizer
from qwen_rerank.local._scorer import PrefixState, YesNoScorer, raise_out_of_memory, score_halving
from qwen_rerank.local._threads import (
    fit_threads,
    passes_at_once,
    run_in_parallel,
    torch_threads,
    usable_cpus,
)
from qwen_rerank.local._vl import find_vl_folder
from qwen_rerank.local._vl_engine import VLEngine
from qwen_rerank.local._vl_prompt import DEFAULT_VL_INSTRUCTION, DEFAULT_VL_MAX_LENGTH
from qwen_rerank.local._work import Tracker, Work, common_head
from qwen_rerank.media import MediaLimits
from qwen_rerank.prompt import DEFAULT_MODEL, PromptTokenizer

__all__ = ["DEFAULT_MAX_LENGTH", "LocalReranker"]

DEFAULT_MAX_LENGTH = 8192
"""``max_length`` of a Qwen3-Reranker when none is given (a Qwen3-VL-Reranker's is the official 10,240)."""


ForwardPass = tuple[Work, list[int]]
"""One forward pass: a group of prompts, and which of its rows run in the pass."""
Done = Callable[[Work, list[int]], None]


class LocalReranker(Reranker):
    """Qwen3-Reranker run in this process with transformers.

    A Qwen3-VL-Reranker checkpoint (recognised from its ``config.json``) loads
    too: it scores images and video as well as text, as the official code does
    (`multimodal` is then true; ``long_documents="chunk"`` is refused). See
    [Images and video](multimodal.md).

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

    On the CPU, loading lowers torch's default thread count to the CPUs this
    process may use (its affinity mask and cgroup quota). A call of many
    forward passes then runs one pass per CPU at once, each on one thread, so
    a CPU that other work takes slows only its own pass instead of stalling
    every operator at a barrier; a call of few passes on a busy machine runs
    with only the CPUs left free. A thread count you set (``torch.set_num_threads``,
    ``OMP_NUM_THREADS``) is kept, and every pass uses it, one at a time.

    One instance may be used from many threads and from async code at once:
    calls take turns at the model, and ``ascore`` / ``arerank`` run in a
    worker thread, never blocking the event loop.

    Args:
        model: A hub id (``"Qwen/Qwen3-Reranker-4B"``) or a local checkpoint
            folder (a ``str`` or any ``os.PathLike``, e.g. a ``pathlib.Path``).
            A hub id is downloaded, or read from the Hugging Face cache when
            the hub cannot be reached (checked within a few seconds). A
            one-logit ``-seq-cls`` conversion (``Qwen3ForSequenceClassification``,
            as TEI and Infinity serve) loads too and scores ``sigmoid(logit)``,
            the same score (see [TEI and Infinity](tei-infinity.md)).
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
            ``None`` takes 8192 (10,240 for a Qwen3-VL-Reranker, which keeps
            the official rule: special tokens and the last 5 tokens stay).
        instruction: Default task instruction; see [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION]
            (a Qwen3-VL-Reranker's is [`DEFAULT_VL_INSTRUCTION`][qwen_rerank.media.DEFAULT_VL_INSTRUCTION]).
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
            the best window's score and ``span`` (see [Long documents](long-documents.md)).
        chunk_tokens: Chunk mode: document tokens per window. ``None`` (the
            default) takes the most that fit beside the instruction and query.
        chunk_overlap: Chunk mode: tokens that neighbouring windows share.
            ``None`` takes 64, or a quarter of the window when that is less.
        compile: Run the model through ``torch.compile`` (dynamic shapes).
            Off by default. It fuses the element-wise work between the matrix
            multiplies, but passes then run one at a time: in bfloat16 on a
            CPU with AVX-512 or AMX it was 1.15-1.3x faster on short documents
            on a quiet machine, and slower on 4,000-token documents, on a busy
            machine, and in float32 without AVX-512 (see the docs' Speed page).
            The first calls compile, for up to a minute or more per kind of
            forward pass. Compiled kernels are kept on disk
            (``$TORCHINDUCTOR_CACHE_DIR``, by default ``torch-compile`` in the
            per-user cache folder ``~/.cache/qwen-rerank``), so a later process
            skips compiling them, though not torch's tracing (about 20 s on a
            small CPU). Worth it only for a long-lived process of its own
            scoring thousands of short documents. Needs a C++ compiler on CPU.
            Scores equal the uncompiled ones within float rounding.
        allow_urls: A Qwen3-VL-Reranker only: fetch ``http(s)://`` images and
            videos. Off by default, so a URL in a document is an error and
            nothing is fetched (see [Images and video](multimodal.md)).
        media_limits: A Qwen3-VL-Reranker only: the
            [`MediaLimits`][qwen_rerank.media.MediaLimits] on reading an image
            or a video (bytes, pixels, frames).

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
        max_length: int | None = None,
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
        allow_urls: bool = False,
        media_limits: MediaLimits | None = None,
    ) -> None:
        super().__init__(
            instruction=instruction,
            long_documents=long_documents,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        self._check_settings(cache_size, max_length, max_batch_tokens)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        warn_if_slow(self.dtype, self.device)
        # The thread count that a busy machine may lower per call; None when the user chose it.
        self._threads = fit_threads() if self.device.type == "cpu" else None
        self._cpus = usable_cpus()
        self.max_length: int = max_length or 0  # chosen by the checkpoint's kind when not given
        self.prefix_reuse = bool(prefix_reuse)
        self.show_progress = bool(show_progress)
        self._cache = ScoreCache(cache_size) if cache_size else None
        self.model_name = os.fspath(model) if isinstance(model, os.PathLike) else model
        source = find_source(model, revision, trust_remote_code)
        folder = find_vl_folder(source)
        self._vl: VLEngine | None = None
        self._forward_lock = threading.Lock()
        if folder is not None:
            self._load_vl(folder, instruction, max_batch_tokens, _limits(media_limits, allow_urls))
            return
        self.max_length = max_length or DEFAULT_MAX_LENGTH
        self.prompt_tokenizer = load_tokenizer(source)
        self.prompt_tokenizer.check_max_length(self.max_length)
        hf_model, head_rows = load_scoring_model(source, self.dtype)
        self.model = hf_model.to(self.device).eval()
        self.max_batch_tokens: int = max_batch_tokens or default_batch_tokens(
            self.device, self.dtype, getattr(self.model.config, "intermediate_size", 3072)
        )
        self._scorer = self._yes_no_scorer(source, head_rows, bool(compile))

    def _load_vl(
        self, folder: Path, instruction: str | None, max_batch_tokens: int | None, limits: MediaLimits
    ) -> None:
        """Load a Qwen3-VL-Reranker: its own default instruction and prompt length, no windows."""
        if self.long_documents == "chunk":
            raise InvalidInputError(
                "long_documents='chunk' cuts text into windows, which a Qwen3-VL-Reranker's prompts are "
                "not; use long_documents='truncate' (the default)."
            )
        if instruction is None:
            self.instruction = DEFAULT_VL_INSTRUCTION
        self.max_length = self.max_length or DEFAULT_VL_MAX_LENGTH
        self._vl = VLEngine(
            folder,
            device=self.device,
            dtype=self.dtype,
            max_length=self.max_length,
            max_batch_tokens=max_batch_tokens,
            limits=limits,
            cache=self._cache,
        )
        self.model = self._vl.model
        self.prompt_tokenizer = PromptTokenizer(self._vl.scorer.tokenizer)
        self.max_batch_tokens = self._vl.max_batch_tokens

    @staticmethod
    def _check_settings(cache_size: Any, max_length: Any, max_batch_tokens: Any) -> None:
        """Refuse bad numbers before anything loads."""
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidInputError(
                f"cache_size must be an int >= 0 (0 turns the cache off), got {cache_size!r}."
            )
        if max_length is not None:
            check_positive_int("max_length", max_length)
        if max_batch_tokens is not None:
            check_positive_int("max_batch_tokens", max_batch_tokens)

    def _yes_no_scorer(self, source: Source, head_rows: tuple[int, int] | None, compile: bool) -> YesNoScorer:
        """The scoring head on the loaded model: P("yes") from its "no" and "yes" rows.

        ``head_rows`` are the (no, yes) rows of the model's head when they are
        not the tokenizer's ids (a ``-seq-cls`` checkpoint, see ``_seq_cls``).
        """
        no_id, yes_id = (
            (self.prompt_tokenizer.no_id, self.prompt_tokenizer.yes_id) if head_rows is None else head_rows
        )
        try:
            return YesNoScorer(
                self.model,
                yes_id=yes_id,
                no_id=no_id,
                pad_id=self.prompt_tokenizer.pad_id,
                device=self.device,
                compile=compile,
            )
        except TypeError as exc:
            raise ModelLoadError(f"Model {source.model!r} cannot be used as a reranker: {exc}") from exc

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
    def multimodal(self) -> bool:
        """Whether the checkpoint is a Qwen3-VL-Reranker, which scores images and video too."""
        return self._vl is not None

    @property
    def cache_size(self) -> int:
        """Most entries the score cache keeps; 0 when it is off."""
        return 0 if self._cache is None else self._cache.maxsize

    def clear_cache(self) -> None:
        """Forget every cached score (a no-op when the cache is off)."""
        if self._cache is not None:
            self._cache.clear()

    def _prompt_rule(self) -> tuple[PromptTokenizer, int] | None:
        # A Qwen3-VL prompt is cut by its own rule (keeping its special tokens), not this one.
        return None if self._vl is not None else (self.prompt_tokenizer, self.max_length)

    def _score_batch(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Scores per request: cached ones looked up, each request's distinct rest computed together.

        A call with no ``progress`` to report to (``score``, ``rerank``) may show this backend's own bar.
        """
        if self._vl is not None:
            with self._forward_lock:
                return self._vl.score(requests, instruction, progress)
        texts = text_requests(requests)
        known = [self._cached(query, documents, instruction) for query, documents in texts]
        missing = [
            (query, [doc for doc in dict.fromkeys(documents) if doc not in hits])
            for (query, documents), hits in zip(texts, known, strict=True)
        ]
        tracker = Tracker(requests, [len(docs) for _, docs in missing], progress)
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
        return [[hits[doc] for doc in documents] for (_, documents), hits in zip(texts, known, strict=True)]

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
        self, requests: list[TextRequest], instruction: str, tracker: Tracker
    ) -> list[list[float]]:
        """Scores of each request's (distinct) documents, in order, from one plan of forward passes."""
        budget = self.max_batch_tokens
        groups = self._group(requests, instruction, budget)
        passes = [(work, batch) for work in groups for batch in self._plan(work, budget)]
        show = self.show_progress and tracker.progress is None and len(passes) >= 2
        with tqdm(
            total=sum(len(w.prompts) for w in groups), desc="Reranking", unit="doc", disable=not show
        ) as bar:

            def done(work: Work, batch: list[int]) -> None:
                bar.update(len(batch))
                tracker.scored([work.slots[i][0] for i in batch])

            can_split = self._scorer.forward is self.model  # compiled passes run one at a time
            workers, free = passes_at_once(len(passes), self._threads, self._cpus, can_split)
            if workers > 1:
                with self._forward_lock, torch_threads(1):
                    self._run_parallel(passes, workers, done)
            else:
                with torch_threads(free):
                    self._run_serial(passes, done)
        scores: list[list[float]] = [[0.0] * len(docs) for _, docs in requests]
        for work in groups:
            for (request, document), value in zip(work.slots, work.scores, strict=True):
                scores[request][document] = value
        return scores

    def _run_serial(self, passes: list[ForwardPass], done: Done) -> None:
        """Run ``passes`` one after the other, each using all of torch's threads."""
        for k, (work, batch) in enumerate(passes):
            with self._forward_lock:
                if work.head is not None and work.prefix is None:
                    work.prefix = self._prefix(work.head)
                self._run_batch(batch, work, work.head is not None)
            if k + 1 == len(passes) or passes[k + 1][0] is not work:
                work.prefix = None  # free the prefix's key/value states once its rows are done
            done(work, batch)

    def _run_parallel(self, passes: list[ForwardPass], workers: int, done: Done) -> None:
        """Run ``passes`` on ``workers`` threads at once (see `passes_at_once`).

        The caller holds the model and has set one intra-op thread. Passes are
        taken in order, so a group's prefix is made by the first of its passes
        to start, and freed when its last pass ends.
        """
        left = collections.Counter(id(work) for work, _ in passes)
        prefix_locks = {id(work): threading.Lock() for work, _ in passes}

        def run(forward: ForwardPass) -> None:
            work, batch = forward
            if work.head is not None:
                with prefix_locks[id(work)]:
                    if work.prefix is None:
                        work.prefix = self._prefix(work.head)
            self._run_batch(batch, work, work.head is not None)

        def finished(forward: ForwardPass) -> None:
            work, batch = forward
            left[id(work)] -= 1
            if not left[id(work)]:
                work.prefix = None
            done(work, batch)

        run_in_parallel(passes, workers, run, finished)

    def _group(self, requests: list[TextRequest], instruction: str, budget: int) -> list[Work]:
        """Each request's prompts: in a group of its own continuing its prefix, where that pays,
        or in one pool of whole prompts that requests share (see `prefix_pays`)."""
        pt = self.prompt_tokenizer
        groups: list[Work] = []
        pool = Work(prompts=[], rows=[], scores=[])
        for request, (query, documents) in enumerate(requests):
            if not documents:
                continue
            prompts = pt.encode_pairs(query, documents, instruction, self.max_length)
            shared: list[int] = []
            if self.prefix_reuse:
                head = pt.encode_head(query, instruction)
                # A prompt truncated into its query does not start with the head; it runs whole. So
                # does one that fills a batch alone: reuse would save a sliver, at the price of a mask.
                alone = budget // 2
                shared = [
                    i for i, p in enumerate(prompts) if len(head) < len(p) <= alone and p[: len(head)] == head
                ]
                tails = [len(prompts[i]) - len(head) for i in shared]
                if shared and prefix_pays(len(head), tails, budget):
                    group = Work(prompts=[], rows=[], scores=[], head=head)
                    for i in shared:
                        group.add(prompts[i], prompts[i][len(head) :], (request, i))
                    groups.append(group)
                else:
                    shared = []
            for i in sorted(set(range(len(prompts))).difference(shared)):
                pool.add(prompts[i], prompts[i], (request, i))
        if pool.prompts:
            groups += self._share_pool(pool, budget)
        # Longest rows first, as within each group: the biggest activations are allocated first.
        return sorted(groups, key=lambda work: -max(map(len, work.rows)))

    def _share_pool(self, pool: Work, budget: int) -> list[Work]:
        """The pool's prompts, continuing the head they all share where that pays.

        Prompts of different queries still share the system prompt and the
        instruction, about half of a short prompt: that head then runs once for
        the whole pool. Rows that fill a batch alone, or a pool where reuse does
        not pay (see `prefix_pays`), run whole.
        """
        alone = budget // 2
        short = [k for k, prompt in enumerate(pool.prompts) if len(prompt) <= alone]
        head = common_head([pool.prompts[k] for k in short]) if self.prefix_reuse and len(short) > 1 else []
        tails = [len(pool.prompts[k]) - len(head) for k in short]
        if not head or not prefix_pays(len(head), tails, budget):
            return [pool]
        shared = Work(prompts=[], rows=[], scores=[], head=head)
        whole = Work(prompts=[], rows=[], scores=[])
        continuing = set(short)
        for k, (prompt, slot) in enumerate(zip(pool.prompts, pool.slots, strict=True)):
            if k in continuing:
                shared.add(prompt, prompt[len(head) :], slot)
            else:
                whole.add(prompt, prompt, slot)
        return [shared, whole] if whole.prompts else [shared]

    def _plan(self, work: Work, budget: int) -> list[list[int]]:
        """``work``'s rows grouped into batches under the token budget, longest rows first."""
        shared = 0 if work.head is None else len(work.head)
        return plan_batches([len(row) for row in work.rows], budget, shared=shared)

    def _prefix(self, head: list[int]) -> PrefixState:
        try:
            return self._scorer.prefix(head)
        except Exception as exc:
            self._raise_out_of_memory(exc, f"the instruction and query ({len(head)} prompt tokens)")

    def _run_batch(self, batch: list[int], work: Work, uses_prefix: bool) -> None:
        """Score ``batch`` into ``work.scores``; on out-of-memory, halve it and retry, down to one row."""

        def score(part: list[int]) -> list[float]:
            return self._scorer.score_rows([work.rows[i] for i in part], work.prefix if uses_prefix else None)

        def fail(exc: Exception, row: int) -> NoReturn:
            self._raise_out_of_memory(exc, f"a document of {len(work.prompts[row])} prompt tokens")

        for i, value in zip(batch, score_halving(batch, score, fail, self.device), strict=True):
            work.scores[i] = value

    def _raise_out_of_memory(self, exc: Exception, what: str) -> NoReturn:
        """Re-raise ``exc``; as `OutOfMemoryError` naming ``what`` if the device ran out of memory."""
        raise_out_of_memory(exc, self.device, what, self.max_length)


def _limits(limits: MediaLimits | None, allow_urls: bool) -> MediaLimits:
    """``limits`` (the defaults when ``None``), fetching URLs if either says so."""
    chosen = limits or MediaLimits()
    return dataclasses.replace(chosen, allow_urls=chosen.allow_urls or bool(allow_urls))
