"""qwen-rerank's vLLM score template (server_template_path) renders exactly the model card's prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_rerank.prompt import DEFAULT_INSTRUCTION, format_prompt, server_template_path

CASES = [
    ("what is a panda?", "The giant panda is a bear.", None),
    ("熊猫吃什么？", "熊猫主要以竹子为食。\n", "Given a statement, retrieve passages that contradict it"),
    ("  spaces  ", "", "line\nbreaks\n"),
    ("{{ not jinja }}", "{% raw %}", None),
]


def render(path: Path, query: str, document: str, instruction: str | None) -> str:
    """As transformers' apply_chat_template renders a template for vLLM: keep_trailing_newline off."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
    kwargs = {} if instruction is None else {"instruction": instruction}
    return env.from_string(path.read_text()).render(messages=messages, **kwargs)


@pytest.mark.parametrize(("query", "document", "instruction"), CASES)
def test_the_template_renders_format_prompt(query: str, document: str, instruction: str | None) -> None:
    rendered = render(server_template_path(), query, document, instruction)
    assert rendered == format_prompt(query, document, instruction or DEFAULT_INSTRUCTION)
    assert rendered.endswith("</think>\n\n")


def test_the_template_ships_with_the_package() -> None:
    path = server_template_path()
    assert path.is_file() and path.parent.name == "qwen_rerank"


def test_a_template_ending_in_a_literal_newline_loses_it(tmp_path: Path) -> None:
    # Why the template writes its text as expressions: Jinja drops a template's last newline.
    literal = tmp_path / "literal.jinja"
    literal.write_text("<think>\n\n</think>\n\n")
    assert render(literal, "q", "d", None) == "<think>\n\n</think>\n"
