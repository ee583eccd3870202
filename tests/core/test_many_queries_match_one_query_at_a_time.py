"""The many-queries API: parity with one call per query, validation, no loss, sync and async,
on the local backend (tiny model) and the remote one (the fake vLLM server on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from qwen_rerank import (
    APIStatusError,
    InvalidInputError,
    LocalReranker,
    MalformedResponseError,
    Reranker,
    VLLMReranker,
)
from qwen_rerank.local._batching import prefix_pays
from qwen_rerank.testing.fake_vllm import FakeVLLMServer
from tests.helpers import LengthReranker, call, max_diff

QUERIES = [
    "what is a giant panda?",
    "中国的首都是哪里？",
    "capital of France",
    "?",
    "trailing space ",
    "<Document>: tricky",
]
DOCS = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
    "北京是中华人民共和国的首都。",
    "Pandas eat bamboo. " * 20,
    "what? yes!\n\nno  ",
    "short",
]


def make_requests(count: int = 14) -> list[tuple[str, list[str]]]:
    """Requests of 0 to 20 documents, with repeats within and across requests."""
    requests = []
    for k in range(count):
        size = [2, 1, 0, 3, 20, 2, 8][k % 7]
        docs = [f"{DOCS[(k + j) % len(DOCS)]} {j % 5}" for j in range(size)]
        if size > 2:
            docs[-1] = docs[0]  # a repeat within the request
        requests.append((f"{QUERIES[k % len(QUERIES)]} {k // len(QUERIES)}", docs))
    return requests


@pytest.fixture(params=["local", "remote"])
def backend(request: pytest.FixtureRequest, tiny_reranker: LocalReranker) -> Iterator[Reranker]:
    if request.param == "local":
        yield tiny_reranker
        return
    fake = request.getfixturevalue("fake_vllm")
    remote = VLLMReranker(fake.url, max_documents_per_request=3, max_concurrency=4, retry_backoff=0.001)
    yield remote
    remote.close()


# -- parity and no loss --------------------------------------------------------------------------------


def test_score_many_equals_one_score_call_per_request(backend: Reranker, mode: str) -> None:
    requests = make_requests()
    frozen = [(q, list(d)) for q, d in requests]
    many = call(backend, mode, "score_many", requests)
    assert requests == frozen  # the caller's lists are not touched
    assert len(many) == len(requests)
    for (query, docs), scores in zip(requests, many, strict=True):
        assert len(scores) == len(docs)
        assert max_diff(scores, backend.score(query, docs)) < 1e-5
    # Reversing the requests reverses the results: nothing is matched by position in a batch.
    backwards = call(backend, mode, "score_many", requests[::-1])
    for a, b in zip(backwards[::-1], many, strict=True):
        assert max_diff(a, b) < 1e-5


def test_rerank_many_equals_one_rerank_call_per_request(backend: Reranker, mode: str) -> None:
    requests = make_requests(7)
    instruction = "Given a question, find the passage that answers it"
    many = call(backend, mode, "rerank_many", requests, top_n=4, score_threshold=0.0, instruction=instruction)
    for (query, docs), results in zip(requests, many, strict=True):
        alone = backend.rerank(query, docs, top_n=4, instruction=instruction)
        assert len(results) == min(4, len(docs))
        assert {r.index for r in results} <= set(range(len(docs)))
        for result in results:
            assert result.document == docs[result.index]
        assert max_diff([r.score for r in results], [r.score for r in alone]) < 1e-5
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True)


def test_instruction_reaches_every_request(backend: Reranker) -> None:
    requests = make_requests(4)
    instruction = "Judge the passage by its mention of animals"
    many = backend.score_many(requests, instruction=instruction)
    for (query, docs), scores in zip(requests, many, strict=True):
        assert max_diff(scores, backend.score(query, docs, instruction=instruction)) < 1e-5


@pytest.mark.parametrize("top_n", [None, 1, 3, 50])
def test_rerank_many_top_n_edges(tiny_reranker: LocalReranker, top_n: int | None) -> None:
    requests = [("q", ["a", "b", "c"]), ("r", ["d"]), ("s", [])]
    many = tiny_reranker.rerank_many(requests, top_n=top_n)
    assert [len(r) for r in many] == [min(top_n or 99, 3), 1, 0]


def test_empty_inputs(backend: Reranker, mode: str) -> None:
    assert call(backend, mode, "score_many", []) == []
    assert call(backend, mode, "score_many", [("q", []), ("r", ())]) == [[], []]
    assert call(backend, mode, "rerank_many", [("q", [])]) == [[]]


def test_many_requests_lose_nothing(backend: Reranker, mode: str) -> None:
    """Forty requests of distinct sizes come back whole, each in its own slot."""
    requests = [(f"query {k}", [f"doc {k}.{j}" for j in range(k % 6)]) for k in range(40)]
    many = call(backend, mode, "rerank_many", requests)
    assert [len(results) for results in many] == [len(docs) for _, docs in requests]
    for (_, docs), results in zip(requests, many, strict=True):
        assert sorted(r.index for r in results) == list(range(len(docs)))
        assert all(r.document == docs[r.index] for r in results)


# -- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ("query", "requests must be a sequence"),
        (None, "requests must be a sequence"),
        ({"q": ["d"]}, "requests must be a sequence"),
        ([("q", ["d"]), "q"], "requests[1] must be a (query, documents) pair"),
        (
            [("q", ["d"]), ("q", ["d"], "x")],
            "requests[1] must be a (query, documents) pair, got a tuple of 3",
        ),
        ([("q", ["d"]), (3, ["d"])], "requests[1]: query must be a str, got int"),
        ([("q", "d")], "requests[0]: documents must be a sequence of str, got a bare str"),
        ([("q", ["d"]), ("q", ["d", 5])], "requests[1]: documents[1] must be a str, got int"),
    ],
)
def test_a_bad_request_is_named_by_position(
    backend: Reranker, mode: str, requests: Any, message: str
) -> None:
    for method in ("score_many", "rerank_many"):
        with pytest.raises(InvalidInputError) as info:
            call(backend, mode, method, requests)
        assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"top_n": 0}, "top_n must be a positive int"), ({"score_threshold": "x"}, "score_threshold")],
)
def test_bad_options_fail_like_rerank(tiny_reranker: LocalReranker, kwargs: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tiny_reranker.rerank_many([("q", ["d"])], **kwargs)
    with pytest.raises(InvalidInputError, match="instruction must be a str"):
        tiny_reranker.score_many([("q", ["d"])], instruction=3)  # type: ignore[arg-type]


def test_validation_happens_before_any_request_is_sent(fake_vllm: Any) -> None:
    with VLLMReranker(fake_vllm.url) as remote, pytest.raises(InvalidInputError, match=r"requests\[2\]"):
        remote.score_many([("q", ["d"]), ("r", ["e"]), ("s", [None])])
    assert fake_vllm.rerank_requests == []


# -- progress ------------------------------------------------------------------------------------------


def test_progress_bar_counts_documents_and_queries(
    backend: Reranker, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = make_requests(7)
    # The bar counts what is scored: a request's identical documents once.
    total = sum(len(set(docs)) for _, docs in requests)
    capsys.readouterr()
    backend.score_many(requests)
    assert "queries" not in capsys.readouterr().err
    backend.score_many(requests, show_progress=True)
    err = capsys.readouterr().err
    assert f"{total}/{total}" in err
    assert f"{len(requests)}/{len(requests)} queries" in err


# -- a backend with only _score_batch, one request at a time --------------------------------------------


def test_a_backend_with_only_score_gets_the_many_calls(mode: str) -> None:
    reranker = LengthReranker()
    requests = [("a", ["x" * 10, "x" * 50]), ("b", []), ("c", ["x" * 30])]
    assert call(reranker, mode, "score_many", requests) == [[0.1, 0.5], [], [0.3]]
    assert reranker.calls == ["a", "c"]  # in order, none for the empty request
    ranked = call(reranker, mode, "rerank_many", requests, top_n=1)
    assert [[r.index for r in results] for results in ranked] == [[1], [], [0]]


# -- local: one plan for all requests ------------------------------------------------------------------


def forward_shapes(reranker: LocalReranker) -> tuple[list[tuple[int, int]], Any]:
    shapes: list[tuple[int, int]] = []

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        shapes.append(tuple(args[0].shape))  # type: ignore[arg-type]

    return shapes, reranker.model.get_input_embeddings().register_forward_pre_hook(hook)


def test_shallow_requests_share_forward_passes(tiny_reranker: LocalReranker) -> None:
    requests = [(f"question number {k}?", [f"answer {k}", f"another answer {k}"]) for k in range(16)]
    shapes, handle = forward_shapes(tiny_reranker)
    try:
        many = tiny_reranker.score_many(requests)
    finally:
        handle.remove()
    # Two documents per query do not pay for a prefix pass of their own, so all 32 prompts are packed
    # together, continuing the head every one of them shares (system prompt, instruction, "<Query>: ..."),
    # which runs once.
    pt = tiny_reranker.prompt_tokenizer
    (head_rows, head), *batches = shapes
    assert head_rows == 1 and head > len(pt.prefix_ids) + len(pt.encode_text([tiny_reranker.instruction])[0])
    assert sum(rows for rows, _ in batches) == 32
    assert len(batches) < 4
    whole = len(pt.encode_pairs(*requests[0], tiny_reranker.instruction, tiny_reranker.max_length)[0])
    assert all(width < whole for _, width in batches)  # rows carry only what follows the shared head
    for (query, docs), scores in zip(requests, many, strict=True):
        assert max_diff(scores, tiny_reranker.score(query, docs)) < 1e-5


def test_deep_requests_reuse_their_prefix(tiny_reranker: LocalReranker) -> None:
    deep = [f"passage {j} about pandas and bamboo" for j in range(30)]
    requests = [("a long question about giant pandas and what they eat?", deep), ("short", ["x", "y"])]
    shapes, handle = forward_shapes(tiny_reranker)
    try:
        tiny_reranker.score_many(requests)
    finally:
        handle.remove()
    head = len(tiny_reranker.prompt_tokenizer.encode_head(requests[0][0], tiny_reranker.instruction))
    assert (1, head) in shapes  # the deep request's prefix ran once
    assert sum(rows for rows, _ in shapes) == 1 + 30 + 2


def test_prefix_pays_for_many_documents_not_for_a_couple() -> None:
    assert not prefix_pays(60, [60, 60], 2048)
    assert prefix_pays(60, [60] * 30, 2048)
    assert prefix_pays(400, [20] * 4, 2048)  # a long query pays off soon


def test_cache_answers_repeats_across_requests(tiny_model_path: Any) -> None:
    reranker = LocalReranker(str(tiny_model_path), device="cpu", cache_size=100)
    requests = make_requests(7)
    first = reranker.score_many(requests)
    shapes, handle = forward_shapes(reranker)
    try:
        again = reranker.score_many(requests)
        assert reranker.score(*requests[0]) == again[0]
    finally:
        handle.remove()
    assert shapes == []
    assert again == first


# -- remote: concurrency, replicas, failures -----------------------------------------------------------


def test_remote_requests_run_concurrently_within_the_limit(fake_vllm: Any, mode: str) -> None:
    fake_vllm.add_fault("delay", times=12, seconds=0.15)
    requests = [(f"q{k}", ["a", "b"]) for k in range(12)]
    with VLLMReranker(fake_vllm.url, max_concurrency=4) as remote:
        call(remote, mode, "score_many", requests)
    assert len(fake_vllm.rerank_requests) == 12
    # Each request waits 0.15 s in the server, so 12 of them overlap: at most 4 at a time.
    assert fake_vllm.peak_in_flight == 4


def test_remote_requests_spread_over_replicas(mode: str) -> None:
    with FakeVLLMServer() as a, FakeVLLMServer() as b:
        with VLLMReranker([a.url, b.url], max_concurrency=3, max_documents_per_request=4) as remote:
            requests = [(f"q{k}", [f"x{j}" for j in range(6)]) for k in range(5)]
            many = call(remote, mode, "score_many", requests)
        assert [len(s) for s in many] == [6] * 5
        assert len(a.rerank_requests) == len(b.rerank_requests) == 5  # 10 sub-requests, round-robin


def test_a_failed_sub_request_fails_the_call_after_the_others_end(fake_vllm: Any, mode: str) -> None:
    fake_vllm.add_fault("delay", times=3, seconds=0.5)
    fake_vllm.add_fault("status", status=400, message="no such thing")
    requests = [(f"q{k}", ["a", "b"]) for k in range(10)]
    with VLLMReranker(fake_vllm.url, max_concurrency=4) as remote:
        started = time.perf_counter()
        with pytest.raises(APIStatusError, match="no such thing") as info:
            call(remote, mode, "score_many", requests)
        elapsed = time.perf_counter() - started
        assert info.value.status_code == 400
        sent = len(fake_vllm.rerank_requests)
        # The three slow requests were finished (sync) or cancelled (async) before the error came out ...
        assert elapsed >= 0.45 or mode == "async"
        assert sent < len(requests)  # ... the ones not yet started never were ...
        time.sleep(max(0.0, 0.8 - (time.perf_counter() - started)))
        assert len(fake_vllm.rerank_requests) == sent  # ... and nothing goes on in the background.
        # The reranker stays usable.
        assert [len(s) for s in remote.score_many(requests[:2])] == [2, 2]


def test_a_malformed_response_fails_the_call_with_our_error(fake_vllm: Any, mode: str) -> None:
    fake_vllm.add_fault("drop_index")
    with VLLMReranker(fake_vllm.url, max_concurrency=2) as remote, pytest.raises(MalformedResponseError):
        call(remote, mode, "score_many", [(f"q{k}", ["a", "b", "c"]) for k in range(4)])


# -- qwen-rerank eval ----------------------------------------------------------------------------------


def one_query_at_a_time_metrics(reranker: Reranker, top_k: int) -> dict[str, float]:
    """The metrics as eval computed them before the many-queries API: one rerank call per query."""
    from qwen_rerank.tools.evaluation import compute_metrics, load_dataset, load_run, select_candidates
    from tests.helpers import TINY_BEIR, TINY_RUN

    data = load_dataset(TINY_BEIR)
    candidates = select_candidates(load_run(TINY_RUN), data.qrels, top_k)
    rankings = {}
    for query_id, doc_ids in candidates.rankings.items():
        results = reranker.rerank(data.queries[query_id], [data.corpus[d] for d in doc_ids])
        rankings[query_id] = [doc_ids[r.index] for r in results]
    return compute_metrics(data.qrels, rankings)


@pytest.mark.parametrize("batch_queries", [1, 4, 64])
def test_eval_metrics_are_those_of_one_query_at_a_time(
    tiny_reranker: LocalReranker, batch_queries: int
) -> None:
    from qwen_rerank.tools.evaluation import evaluate
    from tests.helpers import TINY_BEIR, TINY_RUN

    report = evaluate(tiny_reranker, TINY_BEIR, TINY_RUN, batch_queries=batch_queries)
    assert report.reranked == one_query_at_a_time_metrics(tiny_reranker, 100)


def test_eval_cli_batches_queries_against_vllm_with_concurrency(
    fake_vllm: Any, tiny_reranker: LocalReranker, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from qwen_rerank.cli import main
    from tests.helpers import TINY_BEIR, TINY_RUN

    argv = ["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--top-k", "5", "--json"]
    remote = [*argv, "--base-url", fake_vllm.url, "--concurrency", "3", "--batch-queries", "4"]
    assert main(remote) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["reranked"] == one_query_at_a_time_metrics(tiny_reranker, 5)
    assert "6/6 queries" in err  # the progress bar counts queries and documents
    assert fake_vllm.peak_in_flight <= 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-queries", "0"], "--batch-queries must be a positive integer, got 0."),
        (["--concurrency", "4"], "--concurrency only applies to a vLLM server"),
        (
            ["--base-url", "http://127.0.0.1:9", "--concurrency", "0"],
            "--concurrency must be a positive integer",
        ),
    ],
)
def test_eval_cli_rejects_bad_batching_options(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from qwen_rerank.cli import main
    from tests.helpers import TINY_BEIR, TINY_RUN

    assert main(["eval", str(TINY_BEIR), "--run", str(TINY_RUN), "--model", "/unused", *extra]) == 2
    assert message in capsys.readouterr().err
