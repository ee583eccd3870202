"""Rerank a Ray Data dataset of (query, document) rows, on a cluster of GPUs or against a vLLM fleet.

``RerankPredictor`` is a callable class for `ray.data.Dataset.map_batches`:
each Ray actor builds one reranker (a [`LocalReranker`][qwen_rerank.LocalReranker] on its
GPU, or a [`VLLMReranker`][qwen_rerank.VLLMReranker] against your servers) and scores
the batches it is given:

<!-- not run by the tests: reads s3://bucket and needs four GPUs -->
```python
import ray
from qwen_rerank.integrations.ray import RerankPredictor

ds = ray.data.read_parquet("s3://bucket/pairs/")          # columns: query, document
scored = ds.map_batches(
    RerankPredictor,
    fn_constructor_kwargs={"model": "Qwen/Qwen3-Reranker-0.6B"},
    batch_size=256,
    num_gpus=1,                                   # one GPU per actor ...
    compute=ray.data.ActorPoolStrategy(size=4),   # ... and four actors
)
```

This module does not import ``ray``: Ray imports it on the workers. Install
Ray Data with ``pip install "qwen-rerank[ray]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.factory import create_reranker

__all__ = ["RerankPredictor"]


class RerankPredictor:
    """Adds a relevance score to every (query, document) row of a Ray Data batch.

    Within a batch, rows are grouped by query and scored with one
    [`Reranker.score_pairs`][qwen_rerank.Reranker.score_pairs] call, so rows of a query share its
    prompt prefix and short lists share forward passes (or, remotely, requests
    run concurrently). Each score equals ``reranker.score(query, [document])``
    within float rounding. Rows keep their order and every other column; the
    batch passed in is not modified.

    Batches may be in the ``"numpy"`` format (a dict of arrays, Ray's default)
    or the ``"pandas"`` format; the result is in the same format.

    Args:
        model: As [`create_reranker`][qwen_rerank.create_reranker]: the checkpoint to load
            on each actor, or with ``base_url`` the served model's name.
        base_url: A vLLM server or a list of replicas; ``None`` loads the
            model locally on each actor (on its GPU when Ray gave it one).
        instruction: The task instruction for every row.
        query_column: Column holding the query text.
        document_column: Column holding the document text.
        score_column: Column the scores are written to; it must not exist yet.
        **options: Other settings of the backend, e.g. ``dtype="bfloat16"``,
            ``max_length=``, or for vLLM ``max_concurrency=``.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        instruction: str | None = None,
        query_column: str = "query",
        document_column: str = "document",
        score_column: str = "score",
        **options: Any,
    ) -> None:
        for name, value in (
            ("query_column", query_column),
            ("document_column", document_column),
            ("score_column", score_column),
        ):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(f"{name} must be a non-empty column name, got {value!r}.")
        self.query_column = query_column
        self.document_column = document_column
        self.score_column = score_column
        self.reranker = create_reranker(model, base_url=base_url, instruction=instruction, **options)

    def __call__(self, batch: Any) -> Any:
        """``batch`` with a new score column (float64), in the batch's format."""
        if not isinstance(batch, Mapping) and not hasattr(batch, "assign"):
            raise InvalidInputError(
                "RerankPredictor takes numpy (dict of arrays) or pandas batches, got "
                f'{type(batch).__name__}; pass batch_format="numpy" or "pandas" to map_batches.'
            )
        columns = list(batch.keys()) if isinstance(batch, Mapping) else list(batch.columns)
        for column in (self.query_column, self.document_column):
            if column not in columns:
                raise InvalidInputError(
                    f"The batch has no {column!r} column (columns: {columns}). Pass query_column= and "
                    "document_column= to name yours."
                )
        if self.score_column in columns:
            raise InvalidInputError(
                f"The batch already has a {self.score_column!r} column; pass score_column= to write the "
                "scores to another one."
            )
        queries, documents = list(batch[self.query_column]), list(batch[self.document_column])
        if len(queries) != len(documents):
            raise InvalidInputError(
                f"The batch's {self.query_column!r} column has {len(queries)} rows and its "
                f"{self.document_column!r} column {len(documents)}; every column of a batch must have "
                "one value per row. Build the batch from rows, or fix the dict of arrays."
            )
        scores = self._score(queries, documents)
        if isinstance(batch, Mapping):
            return {**batch, self.score_column: scores}
        return batch.assign(**{self.score_column: scores})

    def _score(self, queries: list[Any], documents: list[Any]) -> Any:
        import numpy as np

        for row, (query, document) in enumerate(zip(queries, documents, strict=True)):
            for column, value in ((self.query_column, query), (self.document_column, document)):
                if not isinstance(value, str):
                    raise InvalidInputError(
                        f"Row {row} of the batch holds {value!r} ({type(value).__name__}) in column "
                        f"{column!r}, not a str. Drop or fill missing values before reranking."
                    )
        pairs = list(zip(queries, documents, strict=True))
        return np.asarray(self.reranker.score_pairs(pairs), dtype=np.float64)
