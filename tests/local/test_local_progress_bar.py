"""LocalReranker's progress bar: only when asked, and only for more than one forward pass."""

from __future__ import annotations

from typing import Any

import pytest

from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
)


def test_progress_bar_only_when_asked(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = make(max_batch_tokens=150)
    capsys.readouterr()
    quiet.score(QUERY, DOCUMENTS)
    assert "Reranking" not in capsys.readouterr().err
    loud = make(max_batch_tokens=100, show_progress=True)
    capsys.readouterr()
    loud.score(QUERY, DOCUMENTS)
    err = capsys.readouterr().err
    assert "Reranking" in err
    assert f"{len(set(DOCUMENTS))}/{len(set(DOCUMENTS))}" in err
    # One forward pass is not a long job: no bar.
    loud.score(QUERY, ["short"])
    assert "Reranking" not in capsys.readouterr().err
