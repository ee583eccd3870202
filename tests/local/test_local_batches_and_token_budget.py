"""What LocalReranker's forward passes compute: only the yes/no logits, batches within the token
budget, the shared prefix once, scores back in input order."""

from __future__ import annotations

from typing import Any

import torch

from qwen_rerank import LocalReranker
from qwen_rerank.local import default_batch_tokens
from qwen_rerank.local._batching import plan_batches
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from tests.helpers import max_diff
from tests.local.fast_path import (
    DOCUMENTS,
    QUERY,
    recorded_batches,
)


def test_only_the_yes_and_no_logits_are_computed(make: Any, shuffled: list[str]) -> None:
    reranker = make(max_batch_tokens=400)
    pt = reranker.prompt_tokenizer
    head = reranker.model.get_output_embeddings()
    # The vocabulary head is cut to the "no" and "yes" rows of the (tied) embedding matrix...
    assert head.weight.shape == (2, reranker.model.config.hidden_size)
    embeddings = reranker.model.get_input_embeddings().weight
    assert torch.equal(head.weight, embeddings[[pt.no_id, pt.yes_id]])
    # ...and applied to one position per prompt.
    head_inputs: list[tuple[int, ...]] = []
    handle = head.register_forward_pre_hook(lambda _m, args: head_inputs.append(tuple(args[0].shape)))
    try:
        with recorded_batches(reranker) as shapes:
            reranker.score(QUERY, shuffled)
    finally:
        handle.remove()
    assert len(shapes) > 3
    assert [shape[:2] for shape in head_inputs] == [(rows, 1) for rows, _ in shapes]


def test_batches_follow_the_token_budget_and_the_prefix_runs_once(make: Any, shuffled: list[str]) -> None:
    budget = 400
    reranker = make(max_batch_tokens=budget)
    head = len(reranker.prompt_tokenizer.encode_head(QUERY, DEFAULT_INSTRUCTION))
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, shuffled)
    # The prefix runs once, right before the first batch that continues it.
    assert shapes.count((1, head)) == 1
    batches = [shape for shape in shapes if shape != (1, head)]
    # A row holds its padded tail plus the prefix it continues.
    assert all(rows * (head + width) <= budget or rows == 1 for rows, width in batches)
    assert any(rows > 1 for rows, _ in batches)
    assert [width for _, width in batches] == sorted((width for _, width in batches), reverse=True)
    assert sum(rows for rows, _ in batches) == len(set(shuffled))  # duplicates are scored once
    # Without prefix reuse, every row carries the whole prompt.
    whole = make(max_batch_tokens=budget, prefix_reuse=False)
    with recorded_batches(whole) as whole_shapes:
        whole.score(QUERY, shuffled)
    assert sum(r * w for r, w in whole_shapes) > sum(r * w for r, w in shapes)


def test_scores_come_back_in_input_order(tiny_reranker: LocalReranker, shuffled: list[str]) -> None:
    scores = tiny_reranker.score(QUERY, shuffled)
    alone = {doc: tiny_reranker.score(QUERY, [doc])[0] for doc in set(shuffled)}
    assert max_diff(scores, [alone[doc] for doc in shuffled]) < 1e-6
    reversed_scores = tiny_reranker.score(QUERY, shuffled[::-1])
    assert max_diff(reversed_scores, scores[::-1]) < 1e-6
    # Duplicates get identical scores, each at its own index.
    assert len({scores[i] for i, doc in enumerate(shuffled) if doc == DOCUMENTS[0]}) == 1


def test_default_budget_keeps_cpu_activations_small(tiny_reranker: LocalReranker) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_batch_tokens(cpu, torch.float32, 3072) == 1024  # Qwen3-Reranker-0.6B
    assert default_batch_tokens(cpu, torch.bfloat16, 3072) == 2048
    assert default_batch_tokens(cpu, torch.float32, 12288) == 256  # Qwen3-Reranker-8B
    assert default_batch_tokens(cuda, torch.bfloat16, 3072) == 16384
    assert tiny_reranker.max_batch_tokens == default_batch_tokens(cpu, torch.float32, 128) == 4096


def test_plan_batches() -> None:
    lengths = [5, 30, 7, 30, 100, 1, 12, 12, 12]
    batches = plan_batches(lengths, 40)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone
    assert batches[1] == [1]  # 30 + 30 padded = 60 > 40
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 40
    widths = [max(lengths[i] for i in batch) for batch in batches]
    assert widths == sorted(widths, reverse=True)
    # Rows that continue a 10-token prefix cost 10 more each: 2 x (10 + 12) > 40.
    assert plan_batches([12, 12, 12], 40, shared=10) == [[0], [1], [2]]
    assert plan_batches([12, 12, 12], 44, shared=10) == [[0, 1], [2]]
    assert plan_batches([], 10) == []
    assert plan_batches([3, 3, 3], 1_000) == [[0, 1, 2]]
