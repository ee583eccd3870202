"""The public pipeline: score_pairs, per-request instructions, the progress hook, the contract's
last_usage/served_model, the factory's table of which option goes to which backend, and chunk
overlaps larger than the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import InvalidInputError, LocalReranker, Reranker, create_reranker
from qwen_rerank.factory import (
    LOCAL_ONLY,
    REMOTE_ONLY,
    backend_for,
    check_backend_options,
    misplaced_options,
    options_for,
)
from tests.helpers import LengthReranker, Recorder, call

PAIRS = [
    ("capital of China?", "Beijing is the capital of China."),
    ("pandas", "Pandas eat bamboo."),
    ("capital of China?", "Paris is in France."),
    ("pandas", "Bears sleep in winter."),
    ("capital of China?", "Beijing is the capital of China."),
]


def test_score_pairs_equals_one_pair_at_a_time_and_groups_by_query(
    tiny_reranker: Reranker, mode: str
) -> None:
    recorder = Recorder(tiny_reranker)
    scores = call(recorder, mode, "score_pairs", PAIRS)
    expected = [tiny_reranker.score(query, [document])[0] for query, document in PAIRS]
    assert scores == pytest.approx(expected, abs=1e-5)
    # One request per distinct query, in order of first appearance; identical documents once.
    assert [(query, documents) for query, documents, _ in recorder.calls] == [
        ("capital of China?", ["Beijing is the capital of China.", "Paris is in France."]),
        ("pandas", ["Pandas eat bamboo.", "Bears sleep in winter."]),
    ]
    assert call(recorder, mode, "score_pairs", []) == []


def test_score_pairs_takes_one_instruction_per_pair(tiny_reranker: Reranker, mode: str) -> None:
    recorder = Recorder(tiny_reranker)
    instructions = ["Find capitals", None, "Find capitals", None, "Be strict"]
    scores = call(recorder, mode, "score_pairs", PAIRS, instructions)
    for (query, document), instruction, score in zip(PAIRS, instructions, scores, strict=True):
        assert score == pytest.approx(
            tiny_reranker.score(query, [document], instruction=instruction)[0], abs=1e-5
        )
    assert sorted({instruction for _, _, instruction in recorder.calls}) == sorted(
        {"Find capitals", "Be strict", recorder.instruction}
    )


@pytest.mark.parametrize(
    ("pairs", "instructions", "message"),
    [
        ("q", None, "pairs must be a list"),
        ([("q", "d"), ("q",)], None, "pairs[1] must be a (query, document) pair"),
        ([("q", "d"), (3, "d")], None, "pairs[1]: query must be a str, got int"),
        ([("q", "d"), ("q", None)], None, "pairs[1]: the document must be a str, got NoneType"),
        ([("q", "d")], ["a", "b"], "instructions has 2 items for 1 pairs"),
        ([("q", "d")], "a", "instructions must be a list"),
        ([("q", "d"), ("q", "e")], [None, 5], "instructions[1]: instruction must be a str"),
    ],
)
def test_bad_pairs_are_named_by_position(pairs: Any, instructions: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        LengthReranker().score_pairs(pairs, instructions)
    assert message in str(info.value)


def test_score_many_takes_per_request_instructions_and_a_progress_hook(tiny_reranker: Reranker) -> None:
    recorder = Recorder(tiny_reranker)
    requests = [("q one", ["a", "b", "a"]), ("q two", []), ("q three", ["c"])]
    reports: list[tuple[int, int]] = []
    scores = recorder.score_many(
        requests,
        instruction="Default here",
        instructions=["Own", None, None],
        progress=lambda queries, documents: reports.append((queries, documents)),
    )
    assert [len(s) for s in scores] == [3, 0, 1]
    assert [(query, instruction) for query, _, instruction in recorder.calls] == [
        ("q one", "Own"),
        ("q three", "Default here"),
    ]
    assert sum(q for q, _ in reports) == 3 and sum(d for _, d in reports) == 3  # "a" is scored once
    with pytest.raises(InvalidInputError, match="instructions has 1 items for 3 requests"):
        recorder.score_many(requests, instructions=["x"])
    ranked = recorder.rerank_many(requests, instructions=["Own", None, "Other"], top_n=1)
    assert [len(r) for r in ranked] == [1, 0, 1]


def test_usage_and_served_model_are_part_of_the_contract(
    tiny_reranker: LocalReranker, fake_vllm: Any
) -> None:
    stub = LengthReranker()
    assert stub.last_usage is None and stub.served_model is None
    assert tiny_reranker.last_usage is None and tiny_reranker.served_model == tiny_reranker.model_name
    named = create_reranker(fake_vllm.served_model_name, base_url=fake_vllm.url)
    unnamed = create_reranker(base_url=fake_vllm.url.replace("http://", "http://u:pw-secret@"))
    assert named.served_model == fake_vllm.served_model_name
    assert unnamed.served_model is not None and unnamed.served_model.startswith("<server default> at ")
    assert "pw-secret" not in unnamed.served_model
    named.score("q", ["d"])
    assert named.last_usage is not None and named.last_usage.prompt_tokens


def test_the_factory_says_which_option_goes_to_which_backend() -> None:
    assert backend_for(None) == "local" and backend_for("http://a:1") == "remote"
    assert backend_for(["http://a:1", "http://b:1"]) == "remote"
    assert not LOCAL_ONLY & REMOTE_ONLY
    assert misplaced_options(["device", "max_length", "timeout"], "local") == ["timeout"]
    assert misplaced_options(["device", "max_length", "timeout"], "remote") == ["device"]
    given = {"device": "cpu", "template": "server", "max_length": 64}
    assert options_for("local", given) == {"device": "cpu", "max_length": 64}
    assert options_for("remote", given) == {"template": "server", "max_length": 64}
    check_backend_options(["max_length", "long_documents"], "remote")
    with pytest.raises(InvalidInputError, match=r"local backend only \(device, compile\).*base_url"):
        check_backend_options(["device", "compile"], "remote")
    with pytest.raises(InvalidInputError, match=r"remote vLLM backend only \(tokenizer\)"):
        check_backend_options(["tokenizer"], "local")


def test_create_reranker_refuses_an_option_of_the_other_backend() -> None:
    with pytest.raises(InvalidInputError, match=r"local backend only \(device\)"):
        create_reranker(base_url="http://127.0.0.1:9", device="cpu")
    with pytest.raises(InvalidInputError, match=r"remote vLLM backend only \(timeout\)"):
        create_reranker("some/model", timeout=5.0)


def test_an_overlap_larger_than_the_window_is_refused_not_shrunk(tiny_model_path: Path) -> None:
    reranker = LocalReranker(
        tiny_model_path, device="cpu", max_length=256, long_documents="chunk", chunk_overlap=500
    )
    document = "Beijing is the capital of China. " * 200
    with pytest.raises(
        InvalidInputError, match=r"chunk_overlap=500 must be smaller than the window, which is \d+"
    ):
        reranker.score("capital of China?", [document])
    fitting = LocalReranker(
        tiny_model_path, device="cpu", max_length=256, long_documents="chunk", chunk_overlap=32
    )
    plan = fitting._plan_windows("capital of China?", [document], fitting.instruction)
    assert plan is not None and 2 < len(plan.texts) < 40
