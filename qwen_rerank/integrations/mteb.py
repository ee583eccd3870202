"""Qwen3-Reranker in MTEB 2.x: `MTEBReranker`, and reranking tasks from local BEIR files.

``MTEBReranker`` implements MTEB's ``CrossEncoderProtocol``, so
``mteb.evaluate`` reranks any retrieval task that carries first-stage
candidates (``task.convert_to_reranking(...)``) with our exact scores, on
this machine or on a vLLM fleet (``base_url=``):

<!-- not run by the tests: tasks are the MTEB tasks you evaluate on -->
```python
import mteb
from qwen_rerank.integrations.mteb import MTEBReranker

results = mteb.evaluate(MTEBReranker("Qwen/Qwen3-Reranker-0.6B"), tasks)
```

`local_reranking_task` turns a BEIR-layout folder and a TREC run (the
input of ``qwen-rerank eval``) into an MTEB task, with no download. Install
with ``pip install "qwen-rerank[mteb]"``.

Which instruction scores a query, first that applies:

1. the ``instruction`` column of the query batch (MTEB's instruction
   retrieval tasks carry one per query);
2. the task's own prompt (``task_metadata.prompt``: a str, or its ``"query"``
   entry);
3. ``instruction=`` given to `MTEBReranker`, else
   [`DEFAULT_INSTRUCTION`][qwen_rerank.DEFAULT_INSTRUCTION].
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import create_reranker
from qwen_rerank.integrations.adapters import model_name
from qwen_rerank.prompt import DEFAULT_MODEL
from qwen_rerank.tools.evaluation import Candidates, Run, load_dataset, load_run, select_candidates
from qwen_rerank.tools.evaluation import Dataset as BeirData

require("mteb", "mteb")

import numpy as np  # noqa: E402 - after the check that names the extra to install
from datasets import Dataset  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models.model_meta import ModelMeta  # noqa: E402

__all__ = ["MTEBReranker", "local_reranking_task"]


class MTEBReranker:
    """A Qwen3-Reranker as an MTEB cross-encoder (``mteb.models.CrossEncoderProtocol``).

    Args:
        model_name: Hub id or local folder of the checkpoint; with ``base_url``,
            the model name to ask the server for.
        revision: Hub revision to load (local backend).
        device: Local backend only: ``"cuda"``, ``"cpu"``...; ``None`` picks one.
        reranker: A ready backend to use instead of building one; no other
            option may be given with it.
        **options: Keyword arguments for [`create_reranker`][qwen_rerank.create_reranker]:
            ``base_url=`` reaches a vLLM server or fleet, ``instruction=``
            sets the default instruction, ``dtype=``, ``max_length=``...
    """

    def __init__(
        self,
        model_name: str | os.PathLike[str] = DEFAULT_MODEL,
        revision: str | None = None,
        device: str | None = None,
        *,
        reranker: Reranker | None = None,
        **options: Any,
    ) -> None:
        self.model_name = _checked_name(model_name)
        self.revision = revision
        if reranker is not None:
            given = [
                name for name, value in (("revision", revision), ("device", device)) if value is not None
            ]
            if given or options:
                raise InvalidInputError(
                    "A ready reranker was passed together with backend settings "
                    f"({', '.join(given + sorted(options))}); configure the reranker itself, "
                    "or drop reranker=."
                )
            self.reranker = reranker
            return
        if revision is not None:
            options["revision"] = revision
        if device is not None:
            options["device"] = device
        self.reranker = create_reranker(self.model_name, **options)

    def __repr__(self) -> str:
        return f"MTEBReranker({self.reranker!r})"

    def predict(
        self,
        inputs1: Iterable[Mapping[str, Any]],
        inputs2: Iterable[Mapping[str, Any]],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The relevance in [0, 1] of each row-aligned (query, document) pair, as a numpy array.

        MTEB sends one query row per candidate. All pairs go to
        [`Reranker.score_pairs`][qwen_rerank.Reranker.score_pairs] at once: each
        query's candidates form one request, a local backend packs the requests
        into shared forward passes, and a vLLM fleet gets them concurrently.
        ``kwargs`` (``batch_size``, ``show_progress_bar``) are accepted and
        ignored: the backend batches by tokens.

        Raises:
            InvalidInputError: The two inputs do not have the same number of
                rows, a batch's instruction column is not as long as its
                queries, or a column is a bare str (not a list of texts).
        """
        queries, instructions = _query_rows(inputs1)
        documents = [text for batch in inputs2 for text in _texts(batch, "text", "inputs2")]
        if len(queries) != len(documents):
            raise InvalidInputError(
                f"MTEB sent {len(queries)} queries for {len(documents)} documents; they must be row-aligned."
            )
        task = task_instruction(task_metadata)
        own = [instruction if instruction is not None else task for instruction in instructions]
        scores = self.reranker.score_pairs(list(zip(queries, documents, strict=True)), own)
        return np.asarray(scores, dtype=np.float64)

    @property
    def mteb_model_meta(self) -> ModelMeta:
        """MTEB's entry for this checkpoint when it has one (with this revision), else a minimal one."""
        mteb = require("mteb", "mteb")
        try:
            known: ModelMeta = mteb.get_model_meta(self.model_name)
        except (KeyError, ValueError):
            return ModelMeta(
                loader=None,
                name=self.model_name
                if _looks_like_hub_id(self.model_name)
                else f"local/{_base(self.model_name)}",
                revision=self.revision,
                release_date=None,
                languages=None,
                n_parameters=None,
                memory_usage_mb=None,
                max_tokens=None,
                embed_dim=None,
                license=None,
                open_weights=None,
                public_training_code=None,
                public_training_data=None,
                framework=["PyTorch", "Transformers"],
                similarity_fn_name=None,
                use_instructions=True,
                training_datasets=None,
                model_type=["cross-encoder"],
            )
        return known.model_copy(update={"revision": self.revision or known.revision})


def _query_rows(inputs1: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str | None]]:
    """Each query row's text and instruction (``None`` where its batch has no instruction column)."""
    queries: list[str] = []
    instructions: list[str | None] = []
    for batch in inputs1:
        # With an instruction column, MTEB appends it to "text" and keeps the bare query in "query".
        has_instruction = "instruction" in batch and "query" in batch
        texts = _texts(batch, "query" if has_instruction else "text", "inputs1")
        queries.extend(texts)
        if not has_instruction:
            instructions.extend([None] * len(texts))
            continue
        column = _texts(batch, "instruction", "inputs1", optional=True)
        if len(column) != len(texts):
            raise InvalidInputError(
                f"An inputs1 batch has {len(column)} instructions for {len(texts)} queries; the "
                "'instruction' column must give one (or None) per query row."
            )
        instructions.extend(column)
    return queries, instructions


def _texts(batch: Mapping[str, Any], column: str, what: str, *, optional: bool = False) -> list[Any]:
    """The batch's ``column`` as a new list of str (or ``None`` where ``optional``)."""
    values = batch[column]
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InvalidInputError(
            f"The {column!r} column of an {what} batch must be a list of texts, one per row, got "
            f"{type(values).__name__}; a bare str would be scored character by character."
        )
    listed = list(values)
    for row, value in enumerate(listed):
        if not isinstance(value, str) and not (optional and value is None):
            kind = "a str or None" if optional else "a str"
            raise InvalidInputError(
                f"Row {row} of the {column!r} column of an {what} batch must be {kind}, "
                f"got {type(value).__name__}."
            )
    return listed


def task_instruction(task_metadata: Any) -> str | None:
    """The task's own query prompt (``metadata.prompt``, or its ``"query"`` entry), if it has one."""
    prompt = getattr(task_metadata, "prompt", None)
    if isinstance(prompt, Mapping):
        prompt = prompt.get("query")
    return prompt if isinstance(prompt, str) and prompt else None


def local_reranking_task(
    dataset: str | os.PathLike[str],
    run: str | os.PathLike[str] | Run,
    *,
    split: str = "test",
    top_k: int = 100,
    name: str = "LocalReranking",
    languages: list[str] | None = None,
    prompt: str | None = None,
) -> AbsTaskRetrieval:
    """An MTEB reranking task from a BEIR-layout folder and a first-stage run, with no download.

    The candidates are those ``qwen-rerank eval`` reranks: each judged query's
    ``top_k`` documents of ``run`` by first-stage score, and each document's
    text is ``title + " " + text``, MTEB's rule. ``mteb.evaluate`` on this task
    therefore reports the same ``ndcg_at_10`` as ``qwen-rerank eval`` (and
    `qwen_rerank.tools.evaluation.evaluate`) on the same files.

    Args:
        dataset: Folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/SPLIT.tsv``.
        run: A TREC run file, or a run parsed by `qwen_rerank.tools.evaluation.load_run`.
        split: The qrels split.
        top_k: Candidates per query.
        name: The task's name in MTEB's results.
        languages: MTEB language codes of the data (default ``["eng-Latn"]``).
        prompt: The task's instruction (see the module docstring); ``None`` leaves the choice
            to `MTEBReranker`.

    Raises:
        DataFormatError: A file is missing or malformed (the message names file and line).
    """
    data = load_dataset(Path(dataset), split)
    parsed = (
        run if isinstance(run, Mapping) else load_run(Path(run), queries=data.queries, corpus=data.corpus)
    )
    candidates = select_candidates(parsed, data.qrels, top_k)
    metadata = _metadata(name, os.fspath(dataset), split, top_k, languages or ["eng-Latn"], prompt)
    split_data = _split_data(data, candidates)
    # MTEB reads a task's metadata from its class, so each local task gets a class of its own.
    task_class = type(name, (_LocalTask,), {"metadata": metadata, "given": {"default": {split: split_data}}})
    task: AbsTaskRetrieval = task_class()
    return task


def _metadata(
    name: str, folder: str, split: str, top_k: int, languages: list[str], prompt: str | None
) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=f"Reranking {top_k} first-stage candidates per query of {folder}.",
        dataset={"path": folder, "revision": "local"},
        type="Reranking",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=languages,
        main_score="ndcg_at_10",
        prompt=prompt,
    )


def _split_data(data: BeirData, candidates: Candidates) -> dict[str, Any]:
    """One split of a local task, in the form MTEB's retrieval tasks load."""
    return {
        "corpus": Dataset.from_list(
            [{"id": d, "text": text, "title": ""} for d, text in data.corpus.items()]
        ),
        "queries": Dataset.from_list([{"id": q, "text": data.queries[q]} for q in data.qrels]),
        "relevant_docs": {q: dict(docs) for q, docs in data.qrels.items()},
        "top_ranked": {q: list(ids) for q, ids in candidates.rankings.items()},
    }


class _LocalTask(AbsTaskRetrieval):
    """A retrieval task whose data is given (class attribute ``given``), not downloaded."""

    given: dict[str, Any]

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = self.given
        self.data_loaded = True


def _checked_name(model: Any) -> str:
    name = model_name(model)
    if name is None:
        raise InvalidInputError("model_name must be a hub id or a local folder, got None.")
    return name


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not os.path.exists(name)


def _base(name: str) -> str:
    return os.path.basename(os.path.normpath(name)) or "model"
