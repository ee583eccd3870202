"""The demo page in a real headless Chromium (Debian's, driven by Playwright), with the tiny model.

Nothing is downloaded: the browser is the system's ``/usr/bin/chromium`` (``apt-get install -y
chromium``). Without it these tests are skipped on a developer's machine, and fail in CI (``CI``
set), where ``.ci/run`` installs it. Screenshots go to ``build/screenshots/`` (or
``$QWEN_RERANK_SCREENSHOTS``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

from qwen_rerank.tools.demo import CHART_BARS, build_demo, launch_demo
from tests.helpers import SCREENSHOTS, free_port, launched_chromium

pytestmark = [pytest.mark.external, pytest.mark.xdist_group("demo-in-chromium")]

WAIT_MS = 60_000
QUERY = "Which city is the capital of China?"
SIX = [
    "Paris is the capital of France.",
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Beijing has been China's capital for most of the last eight centuries.",
    "Bananas are rich in potassium.",
    "Shanghai is China's largest city by population.",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def page_url(tiny_model_path: Path, tiny_reranker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = build_demo(str(tiny_model_path), reranker=tiny_reranker)
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture
def page(browser: Any, page_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(page_url)
    page.locator("#rerank").wait_for()
    yield page
    context.close()


def rerank(page: Any, documents: int) -> str:
    """Click Rerank and wait until the timing line reports ``documents`` documents; return it."""
    page.locator("#rerank").click()
    page.wait_for_function(
        "n => (document.querySelector('#timing textarea')?.value || '').startsWith(`Scored ${n} document`)",
        arg=documents,
    )
    page.wait_for_load_state("networkidle")
    text: str = page.locator("#timing textarea").input_value()
    return text


def table_rows(page: Any) -> list[list[str]]:
    rows = page.locator("#ranking .virtual-body [role=row]")
    return [
        [cell.strip() for cell in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
        for i in range(rows.count())
    ]


def bar_labels(page: Any) -> list[tuple[str, str]]:
    labels = page.locator("#scores .qr-bar-label").all_inner_texts()
    values = page.locator("#scores .qr-bar-value").all_inner_texts()
    return list(zip(labels, values, strict=True))


def shoot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.wait_for_timeout(500)  # let the result's fade-in finish
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_rerank_with_the_defaults_ranks_every_example_document(page: Any, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    assert page.locator("#top_n textarea").input_value() == ""  # empty: all
    timing = rerank(page, 5)
    assert re.fullmatch(r"Scored 5 documents in \d+\.\d{3} s with .+\.", timing), timing
    documents = page.locator("#documents textarea").input_value().split("\n")
    query = page.locator("#query textarea").input_value()
    expected = tiny_reranker.rerank(query, documents)
    rows = table_rows(page)
    assert [row[:3] for row in rows] == [
        [str(rank), str(r.index), f"{r.score:.4f}"] for rank, r in enumerate(expected, 1)
    ]
    assert bar_labels(page) == [
        (f"#{rank} · doc {r.index}", f"{r.score:.4f}") for rank, r in enumerate(expected, 1)
    ]
    shoot(page, "demo-default-click.png")


def test_typed_query_six_documents_and_top_n_two(page: Any, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    page.locator("#query textarea").fill(QUERY)
    page.locator("#documents textarea").fill("\n".join(SIX))
    page.locator("#top_n textarea").fill("2")
    timing = rerank(page, 6)
    assert timing.endswith("Showing the top 2.")
    expected = tiny_reranker.rerank(QUERY, SIX, top_n=2)
    rows = table_rows(page)
    assert [row[:3] for row in rows] == [
        [str(rank), str(r.index), f"{r.score:.4f}"] for rank, r in enumerate(expected, 1)
    ]
    assert [row[3] for row in rows] == [r.document for r in expected]
    assert len(bar_labels(page)) == 2


def test_columns_are_readable_and_previews_wrap(page: Any) -> None:
    page.locator("#documents textarea").fill("\n".join([*SIX[:2], "A very long passage about Beijing. " * 6]))
    rerank(page, 3)
    for name in ("rank", "index"):
        header = page.locator(f"#ranking th[title='{name}']").bounding_box()
        assert header["width"] < 140
        label = page.locator(f"#ranking th[title='{name}'] span.header").bounding_box()
        assert label["height"] < 30, f"the {name!r} header wraps"  # one line, not a letter per line
    overflow = page.evaluate(
        "() => { const w = document.querySelector('#ranking .table-wrap');"
        " return w.scrollWidth - w.clientWidth; }"
    )
    assert overflow <= 1, "the table runs off to the right instead of wrapping previews"
    long_cell = (
        page.locator("#ranking .virtual-body [role=gridcell]").filter(has_text="A very long passage").first
    )
    assert long_cell.bounding_box()["height"] > 40  # wrapped over several lines


def test_sixty_documents_chart_the_top_20(page: Any, tiny_reranker) -> None:  # type: ignore[no-untyped-def]
    documents = [
        f"Passage {i}: {'Beijing' if i % 4 else 'Paris'} and the rivers that run through it."
        for i in range(60)
    ]
    page.locator("#documents textarea").fill("\n".join(documents))
    timing = rerank(page, 60)
    assert timing.startswith("Scored 60 documents in ")
    assert page.locator("#ranking [role=grid]").get_attribute("aria-rowcount") == "61"
    query = page.locator("#query textarea").input_value()
    expected = tiny_reranker.rerank(query, documents)
    assert bar_labels(page) == [
        (f"#{rank} · doc {r.index}", f"{r.score:.4f}") for rank, r in enumerate(expected[:CHART_BARS], 1)
    ]
    assert "Top 20 of 60 scores" in page.locator("#scores").inner_text()
    labels = page.locator("#scores .qr-bar-label")
    boxes = [labels.nth(i).bounding_box() for i in range(CHART_BARS)]
    assert all(b["height"] < 24 for b in boxes), "a bar label wraps"
    assert all(a["y"] + a["height"] <= b["y"] + 1 for a, b in itertools.pairwise(boxes)), "labels overlap"
    shoot(page, "demo-60-documents.png")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("#query textarea", "   ", "Enter a query."),
        ("#documents textarea", "\n  \n", "Enter at least one document"),
    ],
)
def test_empty_inputs_show_a_message(page: Any, field: str, value: str, message: str) -> None:
    page.locator(field).fill(value)
    page.locator("#rerank").click()
    page.get_by_text(message).first.wait_for()
    assert page.locator("#timing textarea").input_value() == ""
    assert (
        page.locator("#ranking .virtual-body [role=gridcell]")
        .filter(has_text=re.compile(r"\d\.\d{4}"))
        .count()
        == 0
    )
