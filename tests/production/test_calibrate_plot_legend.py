"""The legend of `calibrate --plot` reads as words: "no document", not "nodocument".

Pillow's default font draws a space two pixels wide, no wider than the gap between two letters.
The test reads the PNG's legend strip (above the plot) and measures the gaps between the columns
inked in the label's grey.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from qwen_rerank.tools.calibration import curve, write_png

Image = pytest.importorskip("PIL.Image")

LEGEND_ROWS = range(8, 36)  # the legend strip: the plot's frame starts lower, at y = 56


def grey_columns(path: Path) -> list[int]:
    """The x of each column of the legend strip that holds a grey pixel (the "no document" entry)."""
    with Image.open(path) as png:
        image = png.convert("RGB")
        width = image.width
        pixels = image.load()

    def grey(x: int, y: int) -> bool:
        r, g, b = pixels[x, y]
        return max(r, g, b) - min(r, g, b) < 12 and r < 225

    return [x for x in range(width) if any(grey(x, y) for y in LEGEND_ROWS)]


def gaps_between_runs(columns: list[int]) -> list[int]:
    return [b - a - 1 for a, b in itertools.pairwise(columns) if b - a > 1]


def test_the_no_document_label_has_a_visible_space_between_its_words(tmp_path: Path) -> None:
    labelled = {f"q{i}": [(0.9 - 0.1 * j, j % 2 == 0) for j in range(5)] for i in range(4)}
    png = tmp_path / "calibration.png"
    write_png(curve(labelled), png)
    columns = grey_columns(png)
    assert columns, "no grey legend entry"
    swatch_end = next(b for a, b in itertools.pairwise(columns) if b - a > 1)
    label = [x for x in columns if x >= swatch_end]  # the text right of the colour swatch
    gaps = gaps_between_runs(label)
    letter_gap = sorted(gaps)[len(gaps) // 2]
    word_gaps = [gap for gap in gaps if gap >= 2 * letter_gap + 2]
    assert len(word_gaps) == 1, f"gaps between inked columns of 'no document': {gaps}"
