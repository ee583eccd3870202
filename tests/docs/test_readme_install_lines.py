"""The README's install commands: a CPU-only user reads about PyTorch's CPU index before any command
that installs torch, and the cache folder's variable is named where the cached things are.

On a CPU-only Linux machine, torch from the default index is the multi-GB CUDA build; a warning
after the command comes too late.
"""

from __future__ import annotations

import re

from tests.docs.snippets import section
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_INSTALL = re.compile(r"pip install[^\n`]*\btorch\b[^\n`]*")


def test_each_section_that_installs_torch_names_the_cpu_index_before_its_first_command() -> None:
    checked = 0
    for heading in re.findall(r"^## (.+)$", README, flags=re.M):
        text = section(README, heading)
        # The first install of torch that does not name the CPU index itself.
        command = next((m for m in TORCH_INSTALL.finditer(text) if CPU_INDEX not in m.group(0)), None)
        if command is None:
            continue
        checked += 1
        before = " ".join(text[: command.start()].split())
        assert CPU_INDEX in before, f"## {heading}: the CPU index comes after the torch install, or never"
    assert checked >= 2, "the README no longer installs torch in Install and The two commands"


def test_the_cache_variable_is_named_where_the_tiny_model_and_the_built_servers_are() -> None:
    assert "QWEN_RERANK_CACHE" in section(README, "The two commands")
    testing = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    assert "QWEN_RERANK_CACHE" in section(testing, "A tiny model")
    servers = testing[testing.index("infinity-venv") :]
    assert "llama-server" in servers and "QWEN_RERANK_CACHE" in servers
