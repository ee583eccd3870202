"""Score thresholds calibrated on your own data: precision, recall and empty answers at each cut.

Qwen3-Reranker's scores are probabilities, but a threshold such as 0.5 does
not give the same precision on every corpus or instruction. This module
scores a labelled dataset (the layout of [`qwen_rerank.tools.evaluation`][qwen_rerank.tools.evaluation]: a
BEIR folder and a first-stage run) and tells, for each threshold, what a
``score_threshold`` would keep:

<!-- not run by the tests: needs the SciFact dataset and a BM25 run in data/scifact -->
```python
from qwen_rerank import create_reranker
from qwen_rerank.tools.calibration import calibrate

calibration = calibrate(create_reranker(), "data/scifact", "data/scifact/bm25.trec", top_k=20)
cut = calibration.for_precision(0.8)
print(cut.threshold, cut.precision, cut.recall, cut.empty_share)
```

**What is measured.** The candidates are each judged query's first-stage
top-k (as ``eval`` selects them). A threshold ``t`` keeps every candidate
scored at least ``t``. Its *precision* is the share of kept candidates that
the qrels mark relevant, pooled over all queries; its *recall* is the share of
the relevant candidates that it keeps (a threshold cannot bring back what the
first stage missed); its *empty share* is the share of judged queries left
with no candidate at all (judged queries absent from the run always are).

**A threshold holds for one model, one instruction and one corpus.** Change
any of them (another checkpoint, dtype or server template, another
``instruction``, other documents or queries) and calibrate again.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_rerank._imports import require
from qwen_rerank._validation import check_positive_int
from qwen_rerank.base import Reranker
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.tools.evaluation import (
    DEFAULT_BATCH_QUERIES,
    Dataset,
    Run,
    load_dataset,
    load_run,
    select_candidates,
)

__all__ = [
    "Calibration",
    "Cut",
    "calibrate",
    "curve",
    "format_chart",
    "format_cuts",
    "threshold_text",
    "write_png",
]

Labelled = Mapping[str, Sequence[tuple[float, bool]]]
"""Query id -> [(score, relevant)] of its candidates; a query with none is left with no document."""


@dataclass(frozen=True)
class Cut:
    """What one ``score_threshold`` keeps.

    Attributes:
        threshold: Keep candidates whose score is at least this.
        lowest: The lowest score kept.
        kept: Candidates kept, over all queries.
        precision: Share of the kept candidates that are relevant.
        recall: Share of the relevant candidates that are kept.
        empty_share: Share of the queries left with no candidate.
    """

    threshold: float
    lowest: float
    kept: int
    precision: float
    recall: float
    empty_share: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "lowest": self.lowest,
            "kept": self.kept,
            "precision": self.precision,
            "recall": self.recall,
            "empty_share": self.empty_share,
        }


@dataclass(frozen=True)
class Calibration:
    """Every distinct cut of one scored dataset, from the highest threshold to the lowest.

    Attributes:
        cuts: One [`Cut`][qwen_rerank.tools.calibration.Cut] per distinct score: its threshold lies between
            that score and the next lower one, so it keeps exactly the
            candidates scored that high or higher.
        queries: Judged queries.
        candidates: Candidates scored, over all queries.
        relevant: Relevant candidates, over all queries.
    """

    cuts: list[Cut]
    queries: int
    candidates: int
    relevant: int

    def for_precision(self, target: float) -> Cut | None:
        """The cut of highest recall whose precision is at least ``target``; ``None`` if none is."""
        reached = [cut for cut in self.cuts if cut.precision >= target]
        return max(reached, key=lambda cut: (cut.recall, cut.precision)) if reached else None

    def for_recall(self, target: float) -> Cut | None:
        """The cut of highest threshold whose recall is at least ``target``; ``None`` if none is."""
        reached = [cut for cut in self.cuts if cut.recall >= target]
        return max(reached, key=lambda cut: cut.threshold) if reached else None

    def at(self, threshold: float) -> Cut:
        """What ``threshold`` keeps: the cut of the lowest score at or above it (none kept past the top)."""
        for cut in reversed(self.cuts):
            if cut.lowest >= threshold:
                return dataclasses.replace(cut, threshold=threshold)
        return Cut(threshold, math.inf, 0, math.nan, 0.0, 1.0)

    def rows(self, count: int) -> list[Cut]:
        """About ``count`` cuts spread evenly over the scores, highest threshold first, for a table."""
        if len(self.cuts) <= count:
            return list(self.cuts)
        step = (len(self.cuts) - 1) / (count - 1)
        return [self.cuts[round(i * step)] for i in range(count)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "candidates": self.candidates,
            "relevant": self.relevant,
            "cuts": [cut.as_dict() for cut in self.cuts],
        }


def curve(labelled: Labelled) -> Calibration:
    """Every distinct cut of ``labelled`` candidates (pure: no model, no files).

    Raises:
        InvalidInputError: no candidate at all, or none of them relevant.
    """
    pairs = sorted(((s, r) for docs in labelled.values() for s, r in docs), key=lambda p: -p[0])
    relevant = sum(r for _, r in pairs)
    if not pairs or not relevant:
        raise InvalidInputError(
            "Calibration needs candidates the qrels mark relevant, and found "
            f"{'no candidates' if not pairs else 'none relevant'}; check the run and the qrels split."
        )
    best = sorted(max(s for s, _ in docs) for docs in labelled.values() if docs)
    cuts: list[Cut] = []
    kept = hits = 0
    for position, (score, is_relevant) in enumerate(pairs):
        kept, hits = kept + 1, hits + is_relevant
        lower = pairs[position + 1][0] if position + 1 < len(pairs) else None
        if lower is not None and lower == score:
            continue  # the cut falls between distinct scores only
        answered = len(best) - bisect.bisect_left(best, score)
        threshold = _between(lower, score)
        cuts.append(Cut(threshold, score, kept, hits / kept, hits / relevant, 1 - answered / len(labelled)))
    return Calibration(cuts, queries=len(labelled), candidates=len(pairs), relevant=relevant)


def _between(lower: float | None, upper: float) -> float:
    """The shortest decimal in ``(lower, upper]``, so a printed threshold keeps exactly what it says."""
    for digits in range(1, 18):
        scale = float(10**digits)
        value = math.floor(upper * scale) / scale
        if (lower is None or value > lower) and value <= upper:
            return value
    return upper


def score_candidates(
    reranker: Reranker,
    dataset: Dataset,
    rankings: Mapping[str, Sequence[str]],
    *,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    progress: bool = False,
) -> Labelled:
    """Each judged query's candidates as ``(score, relevant)``, scored through ``score_many``."""
    size = check_positive_int("batch_queries", batch_queries)
    ids = list(rankings)
    labelled: dict[str, list[tuple[float, bool]]] = {}
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        requests = [(dataset.queries[q], [dataset.corpus[d] for d in rankings[q]]) for q in batch]
        scored = reranker.score_many(requests, show_progress=progress)
        for query_id, scores in zip(batch, scored, strict=True):
            judged = dataset.qrels.get(query_id, {})
            labelled[query_id] = [
                (score, judged.get(doc, 0) > 0) for doc, score in zip(rankings[query_id], scores, strict=True)
            ]
    return labelled


def calibrate(
    reranker: Reranker,
    dataset: Dataset | str | Path,
    run: Run | str | Path,
    *,
    top_k: int = 100,
    split: str = "test",
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    progress: bool = False,
) -> Calibration:
    """Score each judged query's first-stage top-k and measure every threshold (see the module docstring).

    Args:
        reranker: The backend whose scores are calibrated, with the instruction you will use.
        dataset: A [`Dataset`][qwen_rerank.tools.evaluation.Dataset] or a BEIR-layout folder.
        run: A parsed run or a TREC run file.
        top_k: Candidates per query, as many as your pipeline reranks.
        split: The qrels split, when ``dataset`` is a folder.
        batch_queries: Queries per ``score_many`` call; the results do not depend on it.
        progress: Show a progress bar on stderr.

    Raises:
        DataFormatError: A file is missing or malformed.
        InvalidInputError: ``top_k`` is not a positive integer, or no candidate is relevant (found
            from the qrels, before anything is scored).
    """
    k = check_positive_int("top_k", top_k)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, split)
    parsed = load_run(run, queries=data.queries, corpus=data.corpus) if isinstance(run, (str, Path)) else run
    rankings = select_candidates(parsed, data.qrels, k).rankings
    _check_relevant(rankings, data.qrels)  # before minutes of scoring, not after
    return curve(score_candidates(reranker, data, rankings, batch_queries=batch_queries, progress=progress))


def _check_relevant(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Refuse candidates of which the qrels mark none relevant: no threshold could be measured."""
    count = sum(len(docs) for docs in rankings.values())
    if not any(qrels.get(query, {}).get(doc, 0) > 0 for query, docs in rankings.items() for doc in docs):
        raise InvalidInputError(
            "Calibration needs candidates the qrels mark relevant, and found "
            f"{'no candidates' if not count else f'none relevant among {count}'}; check the run and "
            "the qrels split. Nothing was scored."
        )


def format_cuts(cuts: Sequence[Cut], chosen: Cut | None = None) -> str:
    """A plain-text table of thresholds against precision, recall and the share of empty answers.

    Each threshold is printed so that, pasted back as ``score_threshold``, it is the same float.
    """
    lines = [f"{'threshold':>10}{'kept':>8}{'precision':>11}{'recall':>8}{'no doc':>8}"]
    rows = sorted({*cuts, *([chosen] if chosen else [])}, key=lambda cut: -cut.threshold)
    for cut in rows:
        mark = "  <- chosen" if cut == chosen else ""
        lines.append(
            f"{threshold_text(cut.threshold):>10}{cut.kept:>8}{cut.precision:>11.3f}"
            f"{cut.recall:>8.3f}{cut.empty_share:>8.3f}{mark}"
        )
    return "\n".join(lines)


def threshold_text(value: float) -> str:
    """``value`` as a decimal that reads back as the same float: at least 2 decimals, else ``repr``.

    ``float(threshold_text(t)) == t`` always holds, so a printed threshold pasted back as
    ``score_threshold`` keeps exactly the candidates of its row (``1e-20`` stays ``1e-20``).
    """
    for digits in range(2, 18):
        text = f"{value:.{digits}f}"
        if float(text) == value:
            return text
    return repr(value)


def format_chart(
    calibration: Calibration, chosen: Cut | None = None, width: int = 60, height: int = 12
) -> str:
    """A terminal chart of precision (P), recall (R) and empty share (E) against the threshold."""
    low, high = calibration.cuts[-1].threshold, calibration.cuts[0].threshold
    span = (high - low) or 1.0
    grid = [[" "] * width for _ in range(height + 1)]
    for column in range(width):
        cut = calibration.at(low + span * column / (width - 1))
        for mark, value in (("E", cut.empty_share), ("R", cut.recall), ("P", cut.precision)):
            if not math.isnan(value):
                row = height - round(value * height)
                grid[row][column] = "*" if grid[row][column] not in (" ", mark) else mark
    if chosen is not None:
        column = round((chosen.threshold - low) / span * (width - 1))
        for cells in grid:
            cells[column] = cells[column] if cells[column] != " " else "|"
    lines = [f"{1 - line / height:>5.2f} ┤" + "".join(cells) for line, cells in enumerate(grid)]
    lines.append("      └" + "─" * width)
    lines.append(f"       {low:<{width // 2}.3f}{high:>{width - width // 2}.3f}")
    lines.append("       threshold  (P precision, R recall, E queries with no document, | chosen)")
    return "\n".join(lines)


def write_png(calibration: Calibration, path: str | Path, chosen: Cut | None = None) -> None:
    """Draw the three curves against the threshold into a PNG at ``path`` (needs Pillow: the ``plot`` extra).

    Raises:
        MissingDependencyError: Pillow is not installed.
    """
    image_module = require("PIL.Image", "plot")
    draw_module = require("PIL.ImageDraw", "plot")
    width, height, margin = 720, 420, 56
    image = image_module.new("RGB", (width, height), "white")
    draw = draw_module.Draw(image)
    low, high = calibration.cuts[-1].threshold, calibration.cuts[0].threshold
    span = (high - low) or 1.0
    plot_w, plot_h = width - 2 * margin, height - 2 * margin

    def point(threshold: float, value: float) -> tuple[float, float]:
        return margin + (threshold - low) / span * plot_w, margin + (1 - value) * plot_h

    draw.rectangle([margin, margin, margin + plot_w, margin + plot_h], outline="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = margin + (1 - tick) * plot_h
        draw.line([margin - 4, y, margin, y], fill="black")
        draw.text((8, y - 6), f"{tick:.2f}", fill="black")
    draw.text((margin, height - margin + 8), f"{low:.3f}", fill="black")
    draw.text((width - margin - 40, height - margin + 8), f"{high:.3f}", fill="black")
    _label(draw, (width // 2 - 30, height - margin + 22), "threshold", "black")
    steps = [low + span * i / 200 for i in range(201)]
    for name, colour, key in (
        ("precision", "#1f77b4", "precision"),
        ("recall", "#ff7f0e", "recall"),
        ("no document", "#7f7f7f", "empty_share"),
    ):
        values = [(t, getattr(calibration.at(t), key)) for t in steps]
        line = [point(t, v) for t, v in values if not math.isnan(v)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        left = margin + ("precision", "recall", "no document").index(name) * 120
        draw.rectangle([left, 20, left + 16, 24], fill=colour)
        _label(draw, (left + 22, 16), name, colour)
    if chosen is not None:
        x, _ = point(chosen.threshold, 0.0)
        draw.line([x, margin, x, margin + plot_h], fill="#2ca02c", width=1)
        label = f"chosen {chosen.threshold!r}"
        _label(draw, (x + 4 if x < width - 160 else x - 8 - 7 * len(label), margin + 4), label, "#2ca02c")
    image.save(Path(path), format="PNG")


def _label(draw: Any, at: tuple[float, float], text: str, colour: str) -> None:
    """Draw ``text`` word by word, half the font's size apart.

    Pillow's default font has a space two pixels wide, no wider than the gap between two letters,
    so "no document" read as "nodocument".
    """
    x, y = at
    gap = max(draw.textlength(" "), getattr(draw.getfont(), "size", 10) / 2)
    for word in text.split(" "):
        draw.text((x, y), word, fill=colour)
        x += draw.textlength(word) + gap
