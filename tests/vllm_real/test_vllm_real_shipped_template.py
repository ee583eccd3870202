"""A real vLLM started with the template vLLM ships (qwen3_reranker.jinja): never silently wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker, QwenRerankWarning, VLLMReranker
from qwen_rerank.prompt import server_template_path
from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.conftest import served
from tests.vllm_real.helpers import DOCS, QUERY, check, close

pytestmark = [
    pytest.mark.external,
    pytest.mark.xdist_group("vllm"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
]


@pytest.fixture(scope="module")
def vllm_shipped(vllm_python: Path, vllm_model: Path) -> Iterator[VLLMServer]:
    """vLLM with --chat-template examples/pooling/score/template/qwen3_reranker.jinja."""
    with served(vllm_python, vllm_model, chat_template=True) as server:
        yield server


def test_its_scores_are_off_and_the_client_warns(vllm_shipped: VLLMServer, vllm_local: LocalReranker) -> None:
    with pytest.warns(QwenRerankWarning, match="loses the prompt's final newline"):
        reranker = VLLMReranker(vllm_shipped.url, template="server")
    with reranker:
        scores = reranker.score(QUERY, DOCS)
    # The last token scored is "\n" instead of "\n\n": the scores are another model's.
    assert close(scores, vllm_local.score(QUERY, DOCS)) > 1e-2


def test_check_fails_the_template_with_our_template_as_the_fix(
    vllm_shipped: VLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = check(capsys, vllm_shipped.url, "--template", "server")
    finding = report["server template"]
    assert status == 1 and finding["status"] == "FAIL", finding
    assert "final newline" in finding["message"]
    assert str(server_template_path()) in finding["fix"] and "--chat-template" in finding["fix"]


def test_check_finds_a_client_template_sent_to_a_wrapping_server(
    vllm_shipped: VLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report = check(capsys, vllm_shipped.url, "--template", "client")
    template = report["template"]
    assert template["status"] == "warn" and "twice" in template["message"], template
    assert template["fix"] == "Use template='server'."
