"""The API reference as a reader meets it: formatted signatures, the adapters' fields, links to the
guides, and copy buttons that never cover code.

The site is built strictly from this tree into a temporary folder; the rendered HTML is read, and
headless Chromium (Debian's, as in test_docs_site.py) measures where the copy buttons sit and saves
screenshots in ``build/screenshots`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from tests.docs.snippets import PACKAGES
from tests.helpers import ROOT, SCREENSHOTS

pytestmark = [pytest.mark.external, pytest.mark.slow, pytest.mark.xdist_group("api-reference")]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")

# The fields of each adapter that a reader sets most, with the type and default the page must show.
FIELDS = {
    "langchain_qwen_rerank.QwenRerank": ["top_n: int | None = 3", "base_url: str | list[str] | None = None"],
    "llamaindex_qwen_rerank.QwenRerank": ["top_n: int | None = 3", "base_url: str | list[str] | None = None"],
    "haystack_qwen_rerank.QwenRanker": ["top_k: int | None = 10", "base_url: str | list[str] | None = None"],
}
PAGE_LINK = re.compile(r"\]\((?P<page>[a-z-]+\.md)(?:#(?P<anchor>[a-z0-9-]+))?\)")


@pytest.fixture(scope="module")
def reference(site: Path) -> str:
    return (site / "reference" / "index.html").read_text(encoding="utf-8")


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def signature(reference: str, anchor: str) -> str:
    """The text of the signature block rendered under the heading ``anchor``."""
    start = reference.index(f'id="{anchor}"')
    block = re.search(r'<div class="doc-signature.*?</code>', reference[start:], flags=re.S)
    assert block, f"no signature under {anchor}"
    return text_of(block.group(0))


def test_long_signatures_are_formatted_one_parameter_a_line(reference: str) -> None:
    text = signature(reference, "qwen_rerank.VLLMReranker")
    lines = text.strip().splitlines()
    assert len(lines) > 10 and lines[0] == "VLLMReranker(", text
    assert all(len(line) <= 88 for line in lines), text


@pytest.mark.parametrize("adapter", sorted(FIELDS))
def test_each_adapter_shows_its_fields_with_type_default_and_description(
    reference: str, adapter: str
) -> None:
    for shown in FIELDS[adapter]:
        anchor = f"{adapter}.{shown.split(':')[0]}"
        if adapter.startswith("haystack"):  # not pydantic: its settings are the __init__ parameters
            assert shown in signature(reference, adapter)
            continue
        assert signature(reference, anchor).strip() == shown
        after = reference[reference.index(f'id="{anchor}"') :]
        description = text_of(after.split('<div class="doc doc-contents', 1)[1].split("</p>", 1)[0])
        assert len(description.split()) >= 5, f"{anchor} has no description"


def docstrings() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                if isinstance(node, kinds) and (docstring := ast.get_docstring(node)):
                    yield f"{source.relative_to(ROOT)}:{node.body[0].lineno}", docstring


def test_docstrings_that_name_a_docs_page_link_to_it() -> None:
    bare = [where for where, text in docstrings() if re.search(r"(?<!\]\()\bdocs/[a-z-]+\.md", text)]
    assert not bare, f"name a page with a link, [Title](page.md): {bare}"
    links = [(where, m) for where, text in docstrings() for m in PAGE_LINK.finditer(text)]
    assert links, "no docstring links to a guide"
    for where, link in links:
        assert (ROOT / "docs" / link["page"]).is_file(), f"{where}: no docs/{link['page']}"


def test_the_links_reach_the_guides_in_the_rendered_reference(site: Path, reference: str) -> None:
    hrefs = set(re.findall(r'href="\.\./([a-z-]+)/(?:#([a-z0-9-]+))?"', reference))
    for page, anchor in [
        ("long-documents", ""),
        ("production", "fall-back-to-retrieval-order-instead-of-failing"),
    ]:
        assert (page, anchor) in hrefs, sorted(hrefs)
        target = (site / page / "index.html").read_text(encoding="utf-8")
        assert not anchor or f'id="{anchor}"' in target


# For every code block whose lines overflow: how far its copy buttons reach below the top of its text.
COVERED = """() => [...document.querySelectorAll('.md-typeset pre > code')]
  .filter(code => code.scrollWidth > code.clientWidth + 1)
  .map(code => {
    const nav = code.parentElement.querySelector('.md-code__nav, .md-clipboard');
    if (!nav) return 0;
    const textTop = code.getBoundingClientRect().top + parseFloat(getComputedStyle(code).paddingTop);
    return nav.getBoundingClientRect().bottom - textTop;
  })"""


@pytest.mark.parametrize(("path", "width"), [("/remote/", 700), ("/reference/", 1280), ("/haystack/", 700)])
def test_copy_buttons_never_cover_code_text(served: str, browser: Any, path: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(served + path, wait_until="networkidle")
    covered = page.evaluate(COVERED)
    assert covered, f"{path} at {width} px has no overflowing code block to check"
    assert max(covered) <= 0, f"{path}: a copy button covers {max(covered):.0f} px of code text"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = f"docs-copy-button-{path.strip('/')}-{width}.png"
    page.locator(".md-typeset pre").first.screenshot(path=str(SCREENSHOTS / name))
    page.close()
