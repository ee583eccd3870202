"""LocalReranker's fast path: parity with the model card, batching, prefix reuse, OOM, threads, cache.

Every test runs the real tiny Qwen3 model with the real tokenizer. Faults (out
of memory) are injected by a forward pre-hook on the model's input embeddings
that raises torch's own OutOfMemoryError, the way a real device would.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from qwen_rerank import InvalidInputError, LocalReranker, OutOfMemoryError, QwenRerankWarning
from qwen_rerank.local import default_batch_tokens
from qwen_rerank.local._batching import plan_batches
from qwen_rerank.local._cache import ScoreCache
from qwen_rerank.local._threads import torch_threads
from qwen_rerank.prompt import DEFAULT_INSTRUCTION, format_body, format_query_part
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
# Queries whose last characters could merge with the "\n<Document>" that follows them.
TRICKY_QUERIES = [
    "what?",
    "what? ",
    "what?!",
    "trailing spaces   ",
    "tab\t",
    "newline\n",
    "crlf\r\n",
    "\r",
    "",
    " ",
    "中国的首都是哪里？",
    "首都",
    "🐼",
    "ends with a digit 7",
    "ends with an apostrophe'",
    "it's",
    "a <",
    "x >",
    "e\u0301",
    "combining at the end e\u0301\u0300",
    "zero width joiner\u200d",
    "<Document>:",
    "<|im_end|>",
]


_ORACLE: dict[tuple[object, ...], list[float]] = {}


def card_scores(
    reference: ModelCardReranker, query: str, documents: list[str], instruction: str | None = None
) -> list[float]:
    """The model card loop's scores, one document per batch (no padding), memoised per module."""
    key = (id(reference), reference.max_length, query, tuple(documents), instruction)
    if key not in _ORACLE:
        _ORACLE[key] = reference.score(query, documents, instruction=instruction, batch_size=1)
    return _ORACLE[key]


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def make(tiny_model_path: Path) -> Any:
    """LocalReranker on the tiny model for the given settings, built once per module (callers must not
    leave state behind: hooks are removed, no instance here has a cache)."""
    built: dict[tuple[tuple[str, Any], ...], LocalReranker] = {}

    def factory(**kwargs: Any) -> LocalReranker:
        key = tuple(sorted(kwargs.items()))
        if key not in built:
            built[key] = LocalReranker(str(tiny_model_path), device="cpu", **kwargs)
        return built[key]

    return factory


@pytest.fixture(scope="module")
def shuffled() -> list[str]:
    docs = DOCUMENTS * 2 + [f"document number {i} " * (i % 9 + 1) for i in range(12)]
    random.Random(0).shuffle(docs)
    return docs


# -- the split tokenization behind prefix reuse -------------------------------------------------------


def test_every_prompt_starts_with_the_head(tiny_reranker: LocalReranker) -> None:
    pt = tiny_reranker.prompt_tokenizer
    documents = [*DOCUMENTS, "?", "\n", "s", "'s", "\u0301x", "  two", "!?<", "中文"]
    for instruction in (DEFAULT_INSTRUCTION, INSTRUCTION, "", "ends with?", "中文指令"):
        for query in TRICKY_QUERIES:
            head = pt.encode_head(query, instruction)
            for prompt in pt.encode_pairs(query, documents, instruction, 100_000):
                assert prompt[: len(head)] == head, (query, instruction)
                assert len(prompt) > len(head)


def test_the_head_split_is_not_trivially_safe(tiny_reranker: LocalReranker) -> None:
    """A naive split before the newline would break: Qwen's BPE merges "?\\n" into one token."""
    pt = tiny_reranker.prompt_tokenizer
    query_part = format_query_part("what?", DEFAULT_INSTRUCTION)
    naive = pt.encode_text([query_part.removesuffix("\n")])[0]
    body = pt.encode_text([format_body("what?", "doc", DEFAULT_INSTRUCTION)])[0]
    assert body[: len(naive)] != naive
    question_newline = pt.encode_text(["?\n"])[0]
    assert len(question_newline) == 1
    assert pt.encode_head("what?", DEFAULT_INSTRUCTION)[-1] == question_newline[0]


# -- parity with the model card -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_batch_tokens", "prefix_reuse"),
    [(1, True), (150, True), (700, False), (None, True), (None, False), (1_000_000, True)],
)
def test_parity_across_budgets_and_prefix_reuse(
    make: Any,
    reference: ModelCardReranker,
    shuffled: list[str],
    prefix_reuse: bool,
    max_batch_tokens: int | None,
) -> None:
    ours = make(max_batch_tokens=max_batch_tokens, prefix_reuse=prefix_reuse)
    for instruction in (None, INSTRUCTION):
        expected = card_scores(reference, QUERY, shuffled, instruction)
        assert max_diff(ours.score(QUERY, shuffled, instruction=instruction), expected) < 1e-5
    assert max(expected) - min(expected) > 0.01


@pytest.mark.parametrize("query", ["what?", "中国的首都是哪里？", "trailing spaces   ", "🐼", "crlf\r\n", ""])
def test_parity_for_queries_that_end_in_punctuation_space_or_cjk(
    tiny_reranker: LocalReranker, reference: ModelCardReranker, query: str
) -> None:
    assert max_diff(tiny_reranker.score(query, DOCUMENTS), card_scores(reference, query, DOCUMENTS)) < 1e-5


@pytest.fixture(scope="module")
def truncating_references(tiny_model_path: Path) -> Any:
    built: dict[int, ModelCardReranker] = {}

    def factory(max_length: int) -> ModelCardReranker:
        if max_length not in built:
            built[max_length] = ModelCardReranker(str(tiny_model_path), max_length=max_length)
        return built[max_length]

    return factory


@pytest.mark.parametrize(("max_length", "prefix_reuse"), [(60, True), (75, False), (90, True), (300, False)])
def test_parity_when_truncating(
    make: Any, truncating_references: Any, max_length: int, prefix_reuse: bool
) -> None:
    """Bodies are cut from the end; at 60 and 75 tokens the cut reaches into the query itself."""
    reference = truncating_references(max_length)
    ours = make(max_length=max_length, max_batch_tokens=200, prefix_reuse=prefix_reuse)
    long_query = "Which city is the capital of China, and why? " * 3
    for query in (QUERY, long_query):
        prompts = ours.prompt_tokenizer.encode_pairs(query, DOCUMENTS, DEFAULT_INSTRUCTION, max_length)
        assert max(map(len, prompts)) <= max_length
        assert max_diff(ours.score(query, DOCUMENTS), card_scores(reference, query, DOCUMENTS)) < 1e-5


def test_truncation_into_the_query_falls_back_to_whole_prompts(make: Any, truncating_references: Any) -> None:
    ours = make(max_length=75, max_batch_tokens=200, prefix_reuse=True)
    pt = ours.prompt_tokenizer
    head = pt.encode_head(QUERY * 3, DEFAULT_INSTRUCTION)
    prompts = pt.encode_pairs(QUERY * 3, DOCUMENTS, DEFAULT_INSTRUCTION, 75)
    assert all(p[: len(head)] != head for p in prompts)
    with recorded_batches(ours) as shapes:
        scores = ours.score(QUERY * 3, DOCUMENTS)
    # The query's own head never runs: the prompts do not start with it. They may still continue the
    # head they all share (system prompt, instruction, the part of the query that was kept): at most
    # one extra one-row pass.
    assert (1, len(head)) not in shapes
    assert all(width == 75 or rows * width <= 200 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) - len(DOCUMENTS) in (0, 1)
    assert max_diff(scores, card_scores(truncating_references(75), QUERY * 3, DOCUMENTS)) < 1e-5


# -- what the forward pass computes -------------------------------------------------------------------


def one_pass_at_a_time() -> AbstractContextManager[None]:
    """A thread count of the user's for the block, so passes run one at a time in plan order
    (parallel passes share `_run_batch`; tests/local/test_threads_fit_the_free_cpus.py covers them)."""
    return torch_threads(torch.get_num_threads() + 1)


@contextmanager
def recorded_batches(
    reranker: LocalReranker, *, oom_above: int | None = None
) -> Iterator[list[tuple[int, int]]]:
    """Record the (rows, width) of every forward pass; fail passes of more than ``oom_above`` tokens."""
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


# -- out of memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_out_of_memory_halves_the_batch_and_keeps_the_scores(
    make: Any, shuffled: list[str], prefix_reuse: bool
) -> None:
    reranker = make(max_batch_tokens=4000, prefix_reuse=prefix_reuse)
    expected = reranker.score(QUERY, shuffled)
    with recorded_batches(reranker, oom_above=700) as shapes:
        scores = reranker.score(QUERY, shuffled)
    assert max_diff(scores, expected) < 1e-6
    failed = [k for k, (rows, width) in enumerate(shapes) if rows * width > 700]
    assert failed, "the budget must be large enough for the injected limit to bite"
    for k in failed:
        assert shapes[k][0] > 1
        assert shapes[k + 1][0] == shapes[k][0] // 2  # retried at once, first half
    scored = [rows for rows, width in shapes if rows * width <= 700]
    if prefix_reuse:
        assert shapes[0][0] == 1
        scored = scored[1:]
    assert sum(scored) == len(set(shuffled))


def test_out_of_memory_on_a_single_document_names_its_length(make: Any) -> None:
    reranker = make()
    long_doc = "many words " * 200
    length = len(reranker.prompt_tokenizer.encode_pairs(QUERY, [long_doc], DEFAULT_INSTRUCTION, 8192)[0])
    with recorded_batches(reranker, oom_above=300), pytest.raises(OutOfMemoryError) as info:
        reranker.score(QUERY, ["short", long_doc, "also short"])
    assert f"{length} prompt tokens" in str(info.value)
    assert "max_length" in str(info.value)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    # Short documents still fit; the reranker is usable afterwards.
    with recorded_batches(reranker, oom_above=300):
        assert len(reranker.score(QUERY, ["short", "also short"])) == 2


def test_other_errors_are_not_retried(make: Any) -> None:
    reranker = make()
    calls: list[int] = []

    def hook(_module: torch.nn.Module, _args: tuple[Any, ...]) -> None:
        calls.append(1)
        raise RuntimeError("some other failure")

    handle = reranker.model.get_input_embeddings().register_forward_pre_hook(hook)
    try:
        with pytest.raises(RuntimeError, match="some other failure"):
            reranker.score(QUERY, DOCUMENTS)
        assert 1 <= len(calls) <= torch.get_num_threads()  # at most one failed pass per worker
        calls.clear()
        with one_pass_at_a_time(), pytest.raises(RuntimeError, match="some other failure"):
            reranker.score(QUERY, DOCUMENTS)
    finally:
        handle.remove()
    assert calls == [1]


# -- threads and async --------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [0, 50])
def test_threads_and_async_callers_get_serial_scores(
    make: Any, tiny_model_path: Path, cache_size: int
) -> None:
    serial = make(max_batch_tokens=300)
    reranker = (
        LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=300, cache_size=cache_size)
        if cache_size
        else serial
    )
    queries = [QUERY, "what?", "中国的首都是哪里？", "panda"]
    jobs = [(q, DOCUMENTS[k:] + DOCUMENTS[:k]) for k in range(3) for q in queries]
    expected = [serial.score(q, docs) for q, docs in jobs]

    results: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        try:
            barrier.wait()
            for j in range(offset, len(jobs), 8):
                results[j] = reranker.score(*jobs[j])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def async_callers() -> list[list[float]]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        out = await asyncio.gather(*(reranker.ascore(q, docs) for q, docs in jobs))
        task.cancel()
        assert ticks > 3, "the event loop was blocked"
        return list(out)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    async_results = asyncio.run(async_callers())
    for thread in threads:
        thread.join()
    assert not errors
    concurrent = [results[j] for j in range(len(jobs))] + async_results
    if cache_size == 0:
        # Same batches, same kernels: bit-for-bit the serial scores.
        assert concurrent == expected * 2
    else:
        # Cached scores may come from a call that batched the document with others.
        assert (
            max_diff([s for row in concurrent for s in row], [s for row in expected * 2 for s in row]) < 1e-6
        )


# -- cache --------------------------------------------------------------------------------------------


def test_cache_answers_repeats_without_the_model(tiny_model_path: Path) -> None:
    reranker = LocalReranker(str(tiny_model_path), device="cpu", cache_size=8)
    assert reranker.cache_size == 8
    first = reranker.score(QUERY, DOCUMENTS[:4])
    with recorded_batches(reranker) as shapes:
        assert reranker.score(QUERY, DOCUMENTS[:4]) == first
        assert reranker.score(QUERY, DOCUMENTS[1:3]) == first[1:3]
    assert shapes == []
    # A new document runs alone; the cached ones are not recomputed.
    with recorded_batches(reranker) as shapes:
        scores = reranker.score(QUERY, [DOCUMENTS[0], DOCUMENTS[5]])
    assert scores[0] == first[0]
    # One document does not pay for a prefix pass: its whole prompt is the only row run.
    assert shapes == [(1, shapes[0][1])]
    # The instruction and the query are part of the key.
    with recorded_batches(reranker) as shapes:
        other = reranker.score(QUERY, DOCUMENTS[:1], instruction=INSTRUCTION)
        reranker.score("another query", DOCUMENTS[:1])
    assert len(shapes) == 2
    assert other[0] != first[0]


def test_cache_is_bounded_and_least_recently_used_goes_first(tiny_model_path: Path) -> None:
    reranker = LocalReranker(str(tiny_model_path), device="cpu", cache_size=3)
    reranker.score(QUERY, ["a", "b", "c"])
    reranker.score(QUERY, ["a"])  # a is now the most recent
    reranker.score(QUERY, ["d"])  # evicts b
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["a", "c", "d"])
    assert shapes == []
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["b"])
    assert shapes
    reranker.clear_cache()
    with recorded_batches(reranker) as shapes:
        reranker.score(QUERY, ["a"])
    assert shapes


def test_cache_is_off_by_default_and_checks_its_size(
    tiny_reranker: LocalReranker, tiny_model_path: Path
) -> None:
    assert tiny_reranker.cache_size == 0
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(InvalidInputError, match="cache_size"):
            LocalReranker(str(tiny_model_path), cache_size=bad)  # type: ignore[arg-type]


def test_score_cache_alone() -> None:
    cache = ScoreCache(2)
    cache.put_many([("a", 0.1), ("b", 0.2)])
    assert cache.get_many(["a", "x"]) == [0.1, None]
    cache.put_many([("c", 0.3)])  # evicts b, the least recently used
    assert cache.get_many(["b", "a", "c"]) == [None, 0.1, 0.3]
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


# -- dtype and progress -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::qwen_rerank.QwenRerankWarning")  # a CPU without bf16 warns
def test_bfloat16_on_cpu(tiny_model_path: Path, tiny_reranker: LocalReranker) -> None:
    assert tiny_reranker.dtype == torch.float32
    assert next(tiny_reranker.model.parameters()).dtype == torch.float32
    bf16 = LocalReranker(str(tiny_model_path), device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    scores = bf16.score(QUERY, DOCUMENTS)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max_diff(scores, tiny_reranker.score(QUERY, DOCUMENTS)) < 0.05


def test_half_precision_on_a_cpu_without_it_warns(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen_rerank.local import _devices

    monkeypatch.setattr(_devices, "cpu_has_native", lambda dtype: False)
    with pytest.warns(QwenRerankWarning, match=r"dtype='bfloat16'.*slower than in float32") as record:
        LocalReranker(str(tiny_model_path), device="cpu", dtype="bf16")
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", QwenRerankWarning)
        LocalReranker(str(tiny_model_path), device="cpu", dtype="float32")
        monkeypatch.setattr(_devices, "cpu_has_native", lambda dtype: True)
        LocalReranker(str(tiny_model_path), device="cpu", dtype="bfloat16")


def test_progress_bar_only_when_asked(make: Any, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = make(max_batch_tokens=150)
    capsys.readouterr()
    quiet.score(QUERY, DOCUMENTS)
    assert "Reranking" not in capsys.readouterr().err
    loud = make(max_batch_tokens=100, show_progress=True)
    capsys.readouterr()
    loud.score(QUERY, DOCUMENTS)
    err = capsys.readouterr().err
    assert "Reranking" in err
    assert f"{len(set(DOCUMENTS))}/{len(set(DOCUMENTS))}" in err
    # One forward pass is not a long job: no bar.
    loud.score(QUERY, ["short"])
    assert "Reranking" not in capsys.readouterr().err


# -- torch.compile (opt-in) ---------------------------------------------------------------------------


def test_compiled_scores_match_eager(
    tiny_model_path: Path, tiny_reranker: LocalReranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwen_rerank.local._scorer import compile_cache_dir

    assert tiny_reranker._scorer.forward is tiny_reranker.model  # off by default
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    # A small budget gives every kind of pass: a prefix, rows continuing it, padded whole prompts,
    # and a long prompt alone with no mask.
    compiled = LocalReranker(str(tiny_model_path), device="cpu", compile=True, max_batch_tokens=160)
    eager = LocalReranker(str(tiny_model_path), device="cpu", max_batch_tokens=160)
    assert compiled._scorer.forward is not compiled.model
    requests = [(QUERY, DOCUMENTS), ("Where is Paris?", DOCUMENTS[:3]), ("long " * 120, DOCUMENTS[:1])]
    got = compiled.score_many(requests)
    want = eager.score_many(requests)
    for g, w in zip(got, want, strict=True):
        assert max_diff(g, w) < 1e-5
    # Compiled kernels are kept on disk, in the per-user cache folder unless told otherwise.
    cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert cache == compile_cache_dir()
    assert any(cache.iterdir())
