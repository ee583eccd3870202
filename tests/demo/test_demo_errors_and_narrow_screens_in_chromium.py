"""The demo page after an error, with the tiny model's note, and on a 400 px screen, in Chromium.

After a good run, a bad input (an empty query, ``top_n=0``) must leave no earlier output beside
the error: the table, the chart and the timing are cleared, and the reason stays on the page (not
only in a toast that fades) until the next run. The page built for ``--tiny`` says that its
scores are random. At 400 px the table's headers stay whole words. Screenshots go to
``build/screenshots/`` (or ``$QWEN_RERANK_SCREENSHOTS``) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

from qwen_rerank.cli.demo import TINY_NOTE
from qwen_rerank.tools.demo import TABLE_COLUMNS, build_demo, launch_demo
from tests.helpers import SCREENSHOTS, free_port, launched_chromium

WAIT_MS = 60_000
TOAST_FADES_MS = 8_000  # Gradio's error toast is gone after about 6 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def page_url(tiny_model_path: Path, tiny_reranker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = build_demo(str(tiny_model_path), reranker=tiny_reranker, note=TINY_NOTE)
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def open_page(browser: Any, url: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.locator("#rerank").wait_for()
    return page


@pytest.fixture
def page(browser: Any, page_url: str) -> Iterator[Any]:
    page = open_page(browser, page_url, 1280)
    yield page
    page.close()


def good_run(page: Any) -> None:
    page.locator("#rerank").click()
    timing = "() => (document.querySelector('#timing textarea')?.value || '').startsWith('Scored')"
    page.wait_for_function(timing)
    page.locator("#scores .qr-bar-label").first.wait_for()


def outputs(page: Any) -> dict[str, Any]:
    return {
        "cells": page.locator("#ranking .virtual-body [role=gridcell]").count(),
        "bars": page.locator("#scores .qr-bar-label").count(),
        "timing": page.locator("#timing textarea").input_value(),
    }


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.parametrize(
    ("field", "value", "reason", "shot"),
    [
        ("#query textarea", "  ", "Enter a query.", "demo-error-empty-query.png"),
        ("#top_n textarea", "0", "Leave it empty to keep all", "demo-error-top-n-0.png"),
    ],
)
def test_an_error_clears_every_output_and_its_reason_stays_until_the_next_run(
    page: Any, field: str, value: str, reason: str, shot: str
) -> None:
    good_run(page)
    assert all(outputs(page).values()), outputs(page)
    kept = page.locator(field).input_value()
    page.locator(field).fill(value)
    page.locator("#rerank").click()
    error = page.locator("#error")
    error.get_by_text(reason).wait_for()
    page.wait_for_function("() => !document.querySelector('#scores .qr-bar-label')")
    assert outputs(page) == {"cells": 0, "bars": 0, "timing": ""}
    headers = page.locator("#ranking .header-cell").all_inner_texts()
    assert [h.strip() for h in headers] == TABLE_COLUMNS  # the table is empty, not gone
    page.wait_for_timeout(TOAST_FADES_MS)  # the toast has faded; the reason has not
    assert error.is_visible() and reason in error.inner_text()
    shoot(page, shot)

    page.locator(field).fill(kept)
    good_run(page)
    assert not error.is_visible()
    assert all(outputs(page).values())


def test_the_tiny_models_page_says_its_scores_are_random(page: Any) -> None:
    note = page.locator("#note")
    assert "tiny random test model" in note.inner_text()
    assert "mean nothing" in note.inner_text()


# For each cell of the header and of the number columns: its text and how many lines it takes.
LINES = """() => {
  const lines = span => span.getBoundingClientRect().height / parseFloat(getComputedStyle(span).lineHeight);
  const headers = [...document.querySelectorAll('#ranking .header-cell .header')];
  const cells = [...document.querySelectorAll('#ranking .virtual-body [role=row]')]
    .flatMap(row => [...row.querySelectorAll('[role=gridcell] span')].slice(0, 3));
  return [...headers, ...cells].map(span => [span.textContent.trim(), lines(span)]);
}"""


def test_at_400_px_the_headers_and_numbers_stay_on_one_line(browser: Any, page_url: str) -> None:
    page = open_page(browser, page_url, 400)
    try:
        good_run(page)
        shoot(page, "demo-400px.png")
        cells = page.evaluate(LINES)
        assert [text for text, _ in cells[:4]] == TABLE_COLUMNS
        assert len(cells) == 4 + 3 * 5  # the five example documents' rank, index and score
        broken = [text for text, lines in cells if text != "document" and lines > 1.5]
        assert not broken, f"broken over lines at 400 px: {broken}"
    finally:
        page.close()
