"""The demo page ranks uploaded images in a real headless Chromium, with the tiny Qwen3-VL model.

Images are uploaded through the page's file input; the gallery shows one thumbnail per image,
best first, captioned with the rank and the score LocalReranker gives the same files. A screenshot
goes to ``build/screenshots/`` (or ``$QWEN_RERANK_SCREENSHOTS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("gradio")

from qwen_rerank import LocalReranker
from qwen_rerank.tools.demo import build_demo, launch_demo
from tests.helpers import SCREENSHOTS, free_port, launched_chromium

pytestmark = [pytest.mark.external, pytest.mark.slow, pytest.mark.xdist_group("demo-images-in-chromium")]

WAIT_MS = 60_000
QUERY = "a red square"
COLORS = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 230)}


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    return LocalReranker(tiny_vl_path, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("uploads")
    paths = []
    for name, color in COLORS.items():
        path = folder / f"{name}.png"
        image = Image.new("RGB", (96, 72), color)
        for x in range(0, 96, 6):
            image.putpixel((x, x % 72), (255, 255, 255))
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def page(tiny_vl_path: Path, vl_reranker: LocalReranker) -> Iterator[Any]:
    app = build_demo(str(tiny_vl_path), reranker=vl_reranker, title="Qwen3-VL-Reranker")
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        with launched_chromium() as chromium:
            context = chromium.new_context(viewport={"width": 1280, "height": 1100})
            opened = context.new_page()
            opened.set_default_timeout(WAIT_MS)
            opened.goto(f"http://127.0.0.1:{port}/")
            opened.locator("#rerank_images").wait_for()
            yield opened
            context.close()
    finally:
        app.close()


def test_uploaded_images_are_shown_ranked_with_their_scores(
    page: Any, images: list[Path], vl_reranker: LocalReranker
) -> None:
    page.locator("#query textarea").fill(QUERY)
    page.locator("#image_files input[type=file]").set_input_files([str(path) for path in images])
    page.wait_for_load_state("networkidle")
    page.locator("#rerank_images").click()
    page.wait_for_function(
        "() => (document.querySelector('#image_timing textarea')?.value || '').startsWith('Scored 3 images')"
    )
    page.wait_for_load_state("networkidle")
    thumbnails = page.locator("#gallery img")
    assert thumbnails.count() == 3
    captions = " ".join(page.locator("#gallery").all_inner_texts())
    shown = re.findall(r"#(\d) · (\d\.\d{4}) · (\w+)\.png", captions)
    scores = vl_reranker.score(QUERY, [{"image": str(path)} for path in images])
    expected = sorted(zip(scores, [path.stem for path in images], strict=True), reverse=True)
    assert [(int(rank), name) for rank, _, name in shown] == [
        (rank, name) for rank, (_, name) in enumerate(expected, start=1)
    ]
    assert [float(score) for _, score, _ in shown] == pytest.approx([s for s, _ in expected], abs=1e-4)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "demo-images.png"
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
