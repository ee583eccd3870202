"""The docs site builds strictly, renders no raw reST, and loads nothing from outside localhost.

The build is the one CI runs (``mkdocs build --strict``) into a temporary folder. The rendered
HTML is read as a reader sees it: text outside code blocks must hold no reST role
(``:class:`X```), directive (``.. code-block::``) or literal-block marker (a paragraph ending in
``::``), and no ``>>>`` example rendered as nested blockquotes. Headless Chromium then opens the
pages from a loopback server, records every request, and saves screenshots of the API reference in
``build/screenshots`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import ROOT, SCREENSHOTS

pytestmark = pytest.mark.xdist_group("docs-site")

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")

# Parts of the API reference saved as screenshots: the errors' tree and a class with an Example.
SHOTS = [("qwen_rerank.exceptions", "errors"), ("langchain_qwen_rerank.QwenRerank", "example")]
ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj|ref|py:\w+):`?")
DIRECTIVE = re.compile(r"(?:^|\s)\.\. [a-z][a-z-]*::")


class ProseText(HTMLParser):
    """Collects the text of each block outside ``<pre>``, and counts nested blockquotes."""

    BLOCKS = frozenset({"p", "li", "td", "th", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[str] = [""]
        self.pre = 0
        self.quotes = 0
        self.nested_quotes = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self.pre += 1
        if tag == "blockquote":
            self.quotes += 1
            self.nested_quotes += self.quotes > 1
        if tag in self.BLOCKS:
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.pre -= 1
        if tag == "blockquote":
            self.quotes -= 1
        if tag in self.BLOCKS:
            self.blocks.append("")

    def handle_data(self, data: str) -> None:
        if not self.pre:
            self.blocks[-1] += data


def rest_markup(html: str) -> list[str]:
    """Each piece of raw reST (or blockquoted ``>>>``) a reader of this page would see."""
    parser = ProseText()
    parser.feed(html)
    found = [f"{parser.nested_quotes} nested blockquote(s) (a >>> example?)"] if parser.nested_quotes else []
    for block in parser.blocks:
        text = " ".join(block.split())
        hits = [m.group(0) for pattern in (ROLE, DIRECTIVE) for m in pattern.finditer(text)]
        if text.endswith("::") or ">>>" in text:
            hits.append(text[-40:])
        found += [f"{hit!r} in: {text[:160]}" for hit in hits]
    return found


def test_rest_markup_is_detected() -> None:
    bad = (
        "<p>Each :class:<code>RerankResult</code> is kept::</p>"
        "<p>.. code-block:: python</p><blockquote><blockquote><p>x = 1</p></blockquote></blockquote>"
    )
    assert len(rest_markup(bad)) == 4, rest_markup(bad)
    good = "<p>A <a href='#x'><code>Reranker</code></a>:</p><pre><code>&gt;&gt;&gt; a::b</code></pre>"
    assert rest_markup(good) == []


@pytest.mark.slow  # builds the site
def test_rendered_pages_hold_no_rest_markup(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert site / "reference" / "index.html" in pages
    problems = [f"{page.relative_to(site)}: {hit}" for page in pages for hit in rest_markup(page.read_text())]
    assert not problems, "raw reST in the built site:\n" + "\n".join(problems[:40])


@pytest.mark.slow  # builds the site
def test_every_page_is_in_the_nav_and_fonts_are_local(site: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f": {page.name}" in nav, f"docs/{page.name} is not in mkdocs.yml's nav"
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(), page


@pytest.mark.external
@pytest.mark.slow
@pytest.mark.parametrize("path", ["/", "/reference/", "/scoring/"])
def test_pages_load_in_chromium_from_localhost_only(served: str, browser: Any, path: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(served + path, wait_until="networkidle")
    outside = [url for url in requested if urlsplit(url).hostname != "127.0.0.1"]
    assert not outside, f"{path} asked for {outside}"
    assert not errors, f"{path} logged console errors: {errors}"
    assert page.locator("nav").first.is_visible()
    if path == "/reference/":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "docs-reference-top.png"))
        for anchor, name in SHOTS:
            page.locator(f'[id="{anchor}"]').scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / f"docs-reference-{name}.png"))
    page.close()
