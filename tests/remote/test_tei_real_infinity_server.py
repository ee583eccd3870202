"""api="infinity" against a real Infinity server on CPU, serving the -seq-cls conversion of the tiny model.

Infinity (``infinity-emb[server,torch]==0.0.78``) pins transformers 4, so it
lives in a venv of its own in the per-user cache (``infinity-venv``), which
``.ci/run`` creates. Without it these tests are skipped on a developer's
machine and fail in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qwen_rerank import LocalReranker, VLLMReranker
from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, split_prompts
from qwen_rerank.testing import convert_to_seq_cls
from qwen_rerank.testing.server_process import ServerProcess
from qwen_rerank.tools.diagnose import run_checks
from tests.helpers import max_diff, skip_or_fail

pytestmark = [pytest.mark.external, pytest.mark.xdist_group("infinity")]

INFINITY = user_cache_dir() / "infinity-venv" / "bin" / "infinity_emb"
START_SECONDS = 180

QUERY = "what is a giant panda?"
DOCS = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
    "what? yes!\n\nno  ",
    "  leading and trailing spaces  ",
    "数字 123 和中文文本。",
    "Pandas eat bamboo. " * 40,
    "The giant panda is a bear species endemic to China.",
]
INSTRUCTION = "Given a question about animals, retrieve the passage that answers it"
MAX_LENGTH = 128


INFINITY_TESTS = f"the Infinity tests (.ci/run creates {INFINITY.parent.parent})"


@pytest.fixture(scope="session")
def seq_cls_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_to_seq_cls(tiny_model_path, tmp_path_factory.mktemp("infinity") / "tiny-seq-cls")


class InfinityServer(ServerProcess):
    """``infinity_emb v2`` serving ``model`` on CPU in float32."""

    name = "infinity"
    poll_interval = 0.5
    stop_grace = 15.0

    def __init__(self, model: Path) -> None:
        self.model = model
        super().__init__(startup_timeout=START_SECONDS)

    def command(self, port: int) -> list[str]:
        serve = ["v2", "--model-id", str(self.model), "--host", "127.0.0.1", "--port", str(port)]
        return [
            str(INFINITY),
            *serve,
            "--device",
            "cpu",
            "--engine",
            "torch",
            "--dtype",
            "float32",
            "--no-model-warmup",
        ]

    def environment(self, tmp: str) -> dict[str, str]:
        # Infinity's anonymous usage statistics stay off; HF_HUB_OFFLINE: the model is a folder.
        quiet = {"DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "HF_HUB_OFFLINE": "1"}
        return {**os.environ, **quiet, "TMPDIR": tmp}


@pytest.fixture(scope="session")
def infinity_url(seq_cls_path: Path) -> Iterator[str]:
    """One Infinity server for the session, on 127.0.0.1 at a free port."""
    if not INFINITY.is_file():
        skip_or_fail(f"Infinity is not installed at {INFINITY}", INFINITY_TESTS)
    server = InfinityServer(seq_cls_path)
    try:
        server.start()
    except QwenRerankError as exc:
        skip_or_fail(f"Infinity did not start: {exc}", INFINITY_TESTS)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local(seq_cls_path: Path) -> LocalReranker:
    return LocalReranker(seq_cls_path, device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def remote(infinity_url: str, seq_cls_path: Path) -> Iterator[VLLMReranker]:
    with VLLMReranker(
        infinity_url, api="infinity", tokenizer=str(seq_cls_path), max_length=MAX_LENGTH
    ) as reranker:
        yield reranker


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_scores_equal_local_rerankers_on_the_same_checkpoint(
    remote: VLLMReranker, local: LocalReranker, instruction: str | None
) -> None:
    expected = local.score(QUERY, DOCS, instruction=instruction)
    assert max_diff(remote.score(QUERY, DOCS, instruction=instruction), expected) < 1e-5
    assert max_diff(asyncio.run(remote.ascore(QUERY, DOCS, instruction=instruction)), expected) < 1e-5
    assert max(expected) - min(expected) > 0.01  # the random model tells documents apart


def test_results_map_back_by_index_across_sub_requests(
    infinity_url: str, seq_cls_path: Path, local: LocalReranker
) -> None:
    """Infinity sorts each reply by score; three sub-requests of at most three documents each."""
    with VLLMReranker(
        infinity_url,
        api="infinity",
        tokenizer=str(seq_cls_path),
        max_length=MAX_LENGTH,
        max_documents_per_request=3,
    ) as split:
        ours, theirs = split.rerank(QUERY, DOCS), local.rerank(QUERY, DOCS)
    assert sorted((r.index, r.document) for r in ours) == sorted((r.index, r.document) for r in theirs)
    by_index = {r.index: r.score for r in theirs}
    assert all(abs(r.score - by_index[r.index]) < 1e-5 for r in ours)
    assert any(r.truncated for r in ours)


def test_a_query_cut_by_truncation_scores_the_same(remote: VLLMReranker, local: LocalReranker) -> None:
    long_query = "where do giant pandas live? " * 40
    assert max_diff(remote.score(long_query, DOCS[:3]), local.score(long_query, DOCS[:3])) < 1e-5


def test_usage_is_reported(remote: VLLMReranker) -> None:
    remote.score(QUERY, DOCS[:2])
    usage = remote.last_usage
    assert usage is not None and usage.prompt_tokens is not None and usage.prompt_tokens > 100


def test_the_plain_split_is_what_infinity_gets_wrong(infinity_url: str, local: LocalReranker) -> None:
    """Why the infinity dialect moves the split: Infinity strips both texts, so the plain one scores off."""
    query_text, texts = split_prompts(QUERY, DOCS[:2], DEFAULT_INSTRUCTION)
    body = {"query": query_text, "documents": texts, "raw_scores": False}
    results = httpx.post(f"{infinity_url}/rerank", json=body, timeout=60).json()["results"]
    plain = [next(r["relevance_score"] for r in results if r["index"] == i) for i in range(2)]
    assert max_diff(plain, local.score(QUERY, DOCS[:2])) > 1e-3


def test_check_finds_nothing_wrong(infinity_url: str) -> None:
    findings = run_checks(infinity_url, api="infinity", max_length=512)
    assert [(f.name, f.status) for f in findings if f.status != "ok"] == []
    assert {"reachable", "constant scores", "template", "instruction", "context length"} <= {
        f.name for f in findings
    }
