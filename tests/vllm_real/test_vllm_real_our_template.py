"""template="server" against a real vLLM started with qwen-rerank's template (server_template_path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_rerank import LocalReranker, QwenRerankWarning, VLLMReranker
from qwen_rerank.prompt import server_template_path
from qwen_rerank.testing.vllm_server import VLLMServer
from tests.vllm_real.conftest import served
from tests.vllm_real.helpers import CJK_DOCS, CJK_QUERY, DOCS, OTHER, QUERY, TOL, check, close

pytestmark = [
    pytest.mark.external,
    pytest.mark.xdist_group("vllm"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:template='server' scores:qwen_rerank.QwenRerankWarning"),
]


@pytest.fixture(scope="module")
def vllm_ours(vllm_python: Path, vllm_model: Path) -> Iterator[VLLMServer]:
    """vLLM with --chat-template set to qwen-rerank's template."""
    with served(vllm_python, vllm_model, chat_template=server_template_path()) as server:
        yield server


@pytest.mark.parametrize(("query", "docs"), [(QUERY, DOCS), (CJK_QUERY, CJK_DOCS)], ids=["english", "cjk"])
@pytest.mark.parametrize("instruction", [None, OTHER], ids=["default", "custom"])
def test_server_template_scores_match_local_per_call_and_at_construction(
    vllm_ours: VLLMServer, vllm_local: LocalReranker, query: str, docs: list[str], instruction: str | None
) -> None:
    expected = vllm_local.score(query, docs, instruction=instruction)
    with VLLMReranker(vllm_ours.url, template="server") as per_call:
        assert close(per_call.score(query, docs, instruction=instruction), expected) < TOL
    with VLLMReranker(vllm_ours.url, template="server", instruction=instruction) as built:
        assert close(built.score(query, docs), expected) < TOL


def test_with_a_tokenizer_the_reported_tokens_are_checked_and_agree(
    vllm_ours: VLLMServer, vllm_model: Path, vllm_local: LocalReranker
) -> None:
    with VLLMReranker(vllm_ours.url, template="server", tokenizer=str(vllm_model)) as reranker:
        scores = reranker.score(QUERY, DOCS, instruction=OTHER)
        assert reranker.last_usage is not None and reranker.last_usage.prompt_tokens is not None
    assert close(scores, vllm_local.score(QUERY, DOCS, instruction=OTHER)) < TOL


def test_server_mode_on_vllm_warns_that_the_template_is_unseen(vllm_ours: VLLMServer) -> None:
    with pytest.warns(QwenRerankWarning, match="server_template_path"):
        VLLMReranker(vllm_ours.url, template="server").close()


def test_check_finds_our_template_exact(vllm_ours: VLLMServer, capsys: pytest.CaptureFixture[str]) -> None:

    status, report = check(capsys, vllm_ours.url, "--template", "server")
    assert status == 0, report
    assert report["server template"]["status"] == "ok" and report["server template"]["data"]["exact"]
    assert report["template"]["status"] == "ok" and report["instruction"]["status"] == "ok"
