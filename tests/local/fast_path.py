"""What the tests of LocalReranker's fast path share: the query and documents, the model card's scores
as the oracle, and recording (or failing) the forward passes the model runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch

from qwen_rerank import LocalReranker
from qwen_rerank.local._threads import torch_threads
from tests.reference import ModelCardReranker

QUERY = "Which city is the capital of China?"
INSTRUCTION = "Given a question in Chinese or English, find the passage that answers it"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. " * 14,
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。",
    "Emoji soup 🐼🎋🇨🇳 and a café in São Paulo.",
    "",
    " ",
    "\nstarts with a newline",
    "<Document>: a fake second document field",
    "short",
    "混合 mixed 文本 text with 数字 12345 and punctuation!? " * 5,
    "x" * 2500,
]

_ORACLE: dict[tuple[object, ...], list[float]] = {}


def card_scores(
    reference: ModelCardReranker, query: str, documents: list[str], instruction: str | None = None
) -> list[float]:
    """The model card loop's scores, one document per batch (no padding), memoised per process.

    The memo is keyed by the reference's ``id``: pass only references that live for the session.
    """
    key = (id(reference), reference.max_length, query, tuple(documents), instruction)
    if key not in _ORACLE:
        _ORACLE[key] = reference.score(query, documents, instruction=instruction, batch_size=1)
    return _ORACLE[key]


def one_pass_at_a_time() -> AbstractContextManager[None]:
    """A thread count of the user's for the block, so passes run one at a time in plan order
    (parallel passes share `_run_batch`; tests/local/test_threads_fit_the_free_cpus.py covers them)."""
    return torch_threads(torch.get_num_threads() + 1)


@contextmanager
def recorded_batches(
    reranker: LocalReranker, *, oom_above: int | None = None
) -> Iterator[list[tuple[int, int]]]:
    """Record the (rows, width) of every forward pass; fail passes of more than ``oom_above`` tokens
    with torch's own OutOfMemoryError, as a real device would."""
    shapes: list[tuple[int, int]] = []

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        rows, width = args[0].shape
        shapes.append((rows, width))
        if oom_above is not None and rows * width > oom_above:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {rows * width} tokens' worth."
            )

    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        with one_pass_at_a_time():
            yield shapes
    finally:
        handle.remove()
