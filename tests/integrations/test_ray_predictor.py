"""RerankPredictor: batches in numpy and pandas formats, and examples/ray_batch.py on a local Ray instance.

The Ray test starts one local instance (``ray.init(num_cpus=2)``) and one actor;
it takes about 30 s on 2 cores, most of it Ray starting up.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qwen_rerank import InvalidInputError, LocalReranker
from qwen_rerank.integrations.ray import RerankPredictor
from tests.helpers import ROOT

pytestmark = [pytest.mark.external, pytest.mark.slow, pytest.mark.xdist_group("ray")]

ROWS = {
    "id": [10, 11, 12, 13, 14, 15],
    "query": ["capital of China?", "pandas", "capital of China?", "pandas", "capital of China?", "lone"],
    "document": [
        "Beijing is the capital.",
        "Pandas eat bamboo.",
        "Paris.",
        "Bears.",
        "Beijing is the capital.",
        "",
    ],
}


def expected_scores(reranker: LocalReranker, queries: list[str], documents: list[str]) -> list[float]:
    return [reranker.score(q, [d])[0] for q, d in zip(queries, documents, strict=True)]


@pytest.fixture(scope="module")
def predictor(tiny_model_path: Path) -> RerankPredictor:
    return RerankPredictor(str(tiny_model_path), device="cpu")


def test_numpy_batches_get_a_score_column(predictor: RerankPredictor, tiny_reranker: LocalReranker) -> None:
    batch = {name: np.array(values, dtype=object) for name, values in ROWS.items()}
    out = predictor(batch)
    assert set(out) == {"id", "query", "document", "score"} and "score" not in batch
    assert out["score"].dtype == np.float64
    assert list(out["id"]) == ROWS["id"]  # rows keep their order and their other columns
    assert np.allclose(
        out["score"], expected_scores(tiny_reranker, ROWS["query"], ROWS["document"]), atol=1e-5
    )
    assert out["score"][0] == out["score"][4]  # the same pair, scored once


def test_pandas_batches_get_a_score_column(predictor: RerankPredictor, tiny_reranker: LocalReranker) -> None:
    frame = pd.DataFrame(ROWS, index=[5, 4, 3, 2, 1, 0])
    out = predictor(frame)
    assert "score" not in frame.columns
    assert list(out.index) == [5, 4, 3, 2, 1, 0] and list(out["id"]) == ROWS["id"]
    expected = expected_scores(tiny_reranker, ROWS["query"], ROWS["document"])
    assert np.allclose(out["score"].to_numpy(), expected, atol=1e-5)
    assert len(predictor(frame.iloc[:0])) == 0


def test_column_names_are_configurable(tiny_model_path: Path, tiny_reranker: LocalReranker) -> None:
    custom = RerankPredictor(
        str(tiny_model_path), device="cpu", query_column="q", document_column="text", score_column="relevance"
    )
    out = custom({"q": np.array(["pandas"]), "text": np.array(["Pandas eat bamboo."])})
    assert abs(out["relevance"][0] - tiny_reranker.score("pandas", ["Pandas eat bamboo."])[0]) < 1e-5


def test_remote_backend_against_the_fake_server(fake_vllm: Any) -> None:
    from qwen_rerank import VLLMReranker

    remote = RerankPredictor(base_url=fake_vllm.url, max_concurrency=2)
    out = remote(pd.DataFrame(ROWS))
    with VLLMReranker(fake_vllm.url) as alone:
        expected = [alone.score(q, [d])[0] for q, d in zip(ROWS["query"], ROWS["document"], strict=True)]
    assert np.allclose(out["score"].to_numpy(), expected, atol=1e-5)
    assert len(fake_vllm.rerank_requests) == 3 + len(ROWS["id"])  # one per query in the batch, then one each


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"query": np.array(["q"])}, "no 'document' column"),
        ({"query": np.array(["q"]), "document": np.array([None])}, "Row 0 of the batch holds None"),
        ({"query": np.array([1.5]), "document": np.array(["d"])}, "column 'query', not a str"),
        (
            {"query": np.array(["q"]), "document": np.array(["d"]), "score": np.array([0])},
            "already has a 'score'",
        ),
        ([("q", "d")], "takes numpy (dict of arrays) or pandas batches, got list"),
    ],
)
def test_bad_batches_are_named(predictor: RerankPredictor, batch: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        predictor(batch)
    assert message in str(info.value)


def test_bad_column_names_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="query_column must be a non-empty column name"):
        RerankPredictor(base_url="http://127.0.0.1:9", query_column="")


def test_importing_the_module_does_not_import_ray() -> None:
    code = "import sys, qwen_rerank.integrations.ray; print('ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


# -- the example on a local Ray instance ---------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ray_batch_example", ROOT / "examples" / "ray_batch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A local Ray instance whose session files (sockets, logs) go to a temporary folder of its own.

    Without ``_temp_dir``, Ray keeps them in /tmp/ray/session_* and never removes them. The folder
    is short: Ray's socket paths in it must stay under 108 bytes.
    """
    ray = pytest.importorskip("ray")
    with tempfile.TemporaryDirectory(prefix="ray-") as folder:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=folder)
        try:
            yield ray
        finally:
            ray.shutdown()


def test_example_scores_every_pair_once_on_a_local_ray_instance(
    example: ModuleType, local_ray: Any, tiny_model_path: Path, tiny_reranker: LocalReranker
) -> None:
    pairs = example.make_pairs()
    assert len(pairs) >= 200
    # 45 rows per batch: batches cut through queries, so one query's rows land in several batches.
    rows = example.rerank_pairs(
        pairs, batch_size=45, batch_format="pandas", model=str(tiny_model_path), device="cpu"
    )
    ids = [row["pair_id"] for row in rows]
    assert len(ids) == len(set(ids)) == len(pairs)  # none lost, none duplicated
    assert set(ids) == {pair["pair_id"] for pair in pairs}
    by_query: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    for query, group in by_query.items():
        expected = tiny_reranker.score(query, [row["document"] for row in group])
        assert max(abs(row["score"] - e) for row, e in zip(group, expected, strict=True)) < 1e-5
