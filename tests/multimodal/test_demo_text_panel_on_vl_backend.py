"""The demo's text panel on a Qwen3-VL-Reranker backend, over real HTTP with gradio_client.

The instruction box starts at the text models' default; left as it is, a VL backend uses
its own default instruction, as the image panel does and as `LocalReranker` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("gradio")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # gradio_client reads it too

from qwen_rerank import DEFAULT_INSTRUCTION, LocalReranker
from qwen_rerank.tools.demo import build_demo, launch_demo
from tests.helpers import connect, expected_rows, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo-text-on-vl")]

QUERY = "Which city is the capital of China?"
DOCUMENTS = ["The capital of China is Beijing.", "Paris is in France.", "Gravity pulls bodies together."]


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    return LocalReranker(tiny_vl_path, device="cpu")


@pytest.fixture(scope="module")
def client(tiny_vl_path: Path, vl_reranker: LocalReranker) -> Iterator[object]:
    app = build_demo(str(tiny_vl_path), reranker=vl_reranker, title="Qwen3-VL-Reranker")
    port = free_port()
    launch_demo(app, host="127.0.0.1", port=port, block=False)
    try:
        yield connect(f"http://127.0.0.1:{port}/")
    finally:
        app.close()


def test_the_default_box_gives_way_to_the_vl_models_own_instruction(client, vl_reranker) -> None:  # type: ignore[no-untyped-def]
    table, _, _ = client.predict(QUERY, "\n".join(DOCUMENTS), DEFAULT_INSTRUCTION, api_name="/rerank")
    own = vl_reranker.rerank(QUERY, DOCUMENTS)
    assert [row[:3] for row in table["data"]] == expected_rows(own)
    text_default = vl_reranker.rerank(QUERY, DOCUMENTS, instruction=DEFAULT_INSTRUCTION)
    assert expected_rows(own) != expected_rows(text_default)  # the two instructions score apart


def test_an_instruction_of_the_users_own_is_applied(client, vl_reranker) -> None:  # type: ignore[no-untyped-def]
    instruction = "Given a question, retrieve passages that name a city"
    table, _, _ = client.predict(QUERY, "\n".join(DOCUMENTS), instruction, api_name="/rerank")
    assert [row[:3] for row in table["data"]] == expected_rows(
        vl_reranker.rerank(QUERY, DOCUMENTS, instruction=instruction)
    )
