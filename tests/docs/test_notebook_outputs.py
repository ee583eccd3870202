"""examples/quickstart.ipynb runs offline on the tiny model, and its saved outputs are current."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qwen_rerank.tools.evaluation import evaluate, format_table
from tests.helpers import ROOT, TINY_BEIR, TINY_RUN

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebook")]

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def stdout_of(cell: Any) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("name") == "stdout")


def find_cell(notebook: Any, fragment: str) -> Any:
    matches = [cell for cell in notebook.cells if cell.cell_type == "code" and fragment in cell.source]
    assert len(matches) == 1, fragment
    return matches[0]


@pytest.fixture(scope="module")
def saved() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def executed(saved: Any) -> Any:
    notebook = copy.deepcopy(saved)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    return notebook


def test_one_parameter_cell_selects_the_tiny_model(saved: Any) -> None:
    parameters = [cell for cell in saved.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    assert "MODEL = None" in parameters[0].source


def test_notebook_runs_and_shows_every_part(executed: Any, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    errors = [out for cell in executed.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert errors == []
    stderr = [
        out["text"]
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr"
    ]
    assert stderr == []

    assert "Using a tiny random model" in stdout_of(find_cell(executed, "make_tiny_reranker"))
    core = stdout_of(find_cell(executed, "reranker = LocalReranker(MODEL"))
    query = "What is the capital of China?"
    documents = [  # as in the notebook
        "Gravity is a force that attracts two bodies towards each other.",
        "The capital of China is Beijing.",
        "北京是中华人民共和国的首都。",
        "China is a country in East Asia with a population of over 1.4 billion.",
        "Paris is the capital of France.",
    ]
    expected = tiny_reranker.rerank(query, documents)
    assert core.splitlines()[1:] == [
        f"{rank}. [{r.index}] {r.score:.4f}  {r.document}" for rank, r in enumerate(expected, start=1)
    ]
    langchain = stdout_of(find_cell(executed, "compress_documents"))
    assert langchain.splitlines() == [f"{r.score:.4f}  doc-{r.index}  {r.document}" for r in expected[:3]]
    llamaindex = stdout_of(find_cell(executed, "postprocess_nodes"))
    assert llamaindex.splitlines() == [f"{r.score:.4f}  node-{r.index}  {r.document}" for r in expected[:3]]

    report = evaluate(tiny_reranker, TINY_BEIR, TINY_RUN, top_k=100)
    evaluation = stdout_of(find_cell(executed, "format_table(report)"))
    assert evaluation.startswith(format_table(report) + "\n")
    assert "note: run queries with no qrels in split 'test', not reranked: 1" in evaluation


def test_saved_outputs_match_a_fresh_run(saved: Any, executed: Any) -> None:
    # The notebook is committed with its outputs; they must be what the code prints today.
    for fragment in ("compress_documents", "postprocess_nodes", "format_table(report)", "reranked_run"):
        assert stdout_of(find_cell(saved, fragment)) == stdout_of(find_cell(executed, fragment)), fragment
