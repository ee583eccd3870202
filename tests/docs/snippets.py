"""The Python blocks of README.md, docs/*.md and the docstrings, and the markers that say how each runs.

A fenced ``python`` block runs as written unless the line right above it is one of these markers
(an HTML comment: invisible on the rendered page and in the docs site):

- ``<!-- not run by the tests: REASON -->``: a fragment, or a block that needs what the tests
  cannot give (a GPU, a download, a server of its own, your data). The reason is required.
- ``<!-- run by the tests after the block above -->``: it continues the block above (the names
  it uses come from there), and runs appended to it, in one interpreter.
- ``<!-- run by the tests against the fake vLLM server -->``: it needs a rerank server; every
  ``http(s)://HOST:PORT`` in it is pointed at the fake vLLM server.

The two ``run by the tests`` markers combine: ``<!-- run by the tests after the block above,
against the fake vLLM server -->``. This module imports nothing beyond the standard library, so
that ``.ci/try_wheel.py`` can use it from any interpreter.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qwen_rerank", "langchain_qwen_rerank", "llamaindex_qwen_rerank", "haystack_qwen_rerank")

_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)(?:<!--(?P<marker>[^>]*)-->\n(?P=indent))?```python\n(?P<code>.*?)^(?P=indent)```",
    re.M | re.S,
)
_SKIP = re.compile(r"\s*not run by the tests:\s*(?P<reason>\S.*?)\s*")
_RUN = re.compile(
    r"\s*run by the tests(?P<how>(?: after the block above| against the fake vLLM server|,)+)\s*"
)
_URL = re.compile(r"https?://[\w.-]+:\d+")


@dataclass(frozen=True)
class Block:
    """One fenced python block: where it is, its code, and how the tests run it."""

    where: str  # "docs/remote.md:25": the file and the line of the opening fence
    code: str
    skip: str | None = None  # the reason it is not run
    after_previous: bool = False  # it continues the block before it, in the same file or docstring
    on_server: bool = False  # its URLs are pointed at the fake vLLM server

    @property
    def runs(self) -> bool:
        return self.skip is None


def blocks(text: str, where: str, *, first_line: int = 1) -> list[Block]:
    """Each fenced python block of ``text`` (Markdown), with its marker read.

    Raises:
        ValueError: A marker right above a block says neither how it runs nor why it is not run,
            or a block continues nothing.
    """
    found: list[Block] = []
    for match in _BLOCK.finditer(text):
        line = first_line + text.count("\n", 0, match.start("code")) - 1
        place = f"{where}:{line}"
        marker = match.group("marker")
        code = textwrap.dedent(match.group("code"))
        if marker is None:
            found.append(Block(place, code))
        elif skip := _SKIP.fullmatch(marker):
            found.append(Block(place, code, skip=skip.group("reason")))
        elif run := _RUN.fullmatch(marker):
            after = "after the block above" in run.group("how")
            if after and not found:
                raise ValueError(f"{place}: the marker says it continues a block above, but none is")
            on_server = "against the fake vLLM server" in run.group("how")
            found.append(Block(place, code, after_previous=after, on_server=on_server))
        else:
            raise ValueError(f"{place}: unknown marker <!--{marker}--> above a python block")
    return found


def markdown_blocks(path: str) -> list[Block]:
    """The python blocks of a Markdown file of this repository (``"README.md"``, ``"docs/x.md"``)."""
    return blocks((ROOT / path).read_text(encoding="utf-8"), path)


def docstring_blocks() -> list[list[Block]]:
    """The python blocks of every docstring in the package and the adapters, one list per docstring."""
    found: list[list[Block]] = []
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                docstring = ast.get_docstring(node)
                if docstring and "```python" in docstring:
                    where, line = source.relative_to(ROOT).as_posix(), node.body[0].lineno
                    found.append(blocks(docstring, where, first_line=line))
    return found


def programs(chain: list[Block]) -> list[tuple[Block, str]]:
    """What runs for the blocks of one file or docstring: each block with the code to run for it.

    A block that the next one continues is not run alone: it runs as the start of that one.
    """
    runs: list[tuple[Block, str]] = []
    code_so_far = ""
    for position, block in enumerate(chain):
        code_so_far = code_so_far + "\n" + block.code if block.after_previous else block.code
        continued = position + 1 < len(chain) and chain[position + 1].after_previous
        if block.runs and not continued:
            runs.append((block, code_so_far))
    return runs


def point_at(code: str, url: str) -> str:
    """``code`` with every ``http(s)://HOST:PORT`` in it replaced by ``url``."""
    return _URL.sub(url, code)


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (any level), up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", markdown, flags=re.M | re.S)
    if not match:
        raise ValueError(f"no section {heading!r}")
    return match.group(1)


def python_blocks(markdown: str, heading: str) -> list[str]:
    """The code of each fenced python block under ``heading``."""
    return [block.code for block in blocks(section(markdown, heading), heading)]


ADAPTER_CALL = re.compile(r"\b(QwenRerank|QwenRanker)\(")


def against_server(code: str, url: str, hub_id: str = "Qwen/Qwen3-Reranker-0.6B") -> str:
    """The snippet with its adapter scoring on the server at ``url`` instead of a local model.

    ``model="HUB_ID"`` becomes ``base_url="URL"``, as the snippets' comments offer; an adapter
    built with no model gets ``base_url=`` as its first argument.
    """
    if f'model="{hub_id}"' in code:
        return code.replace(f'model="{hub_id}"', f'base_url="{url}"')
    if not ADAPTER_CALL.search(code):
        raise ValueError(f"no adapter to point at a server in:\n{code}")
    return ADAPTER_CALL.sub(rf'\1(base_url="{url}", ', code)
