"""LocalReranker against the model card's loop, on a model shaped exactly like Qwen3-Reranker-0.6B.

    .venv/bin/python benchmarks/bench_local.py                # full 28 layers, fp32 and bf16 (minutes)
    .venv/bin/python benchmarks/bench_local.py --layers 2     # smoke run

The model has Qwen3-Reranker-0.6B's architecture (hidden 1024, 28 layers, 16
query and 8 key/value heads of 128, intermediate 3072, vocabulary 151,669, tied
embeddings, rope_theta 1e6) with random weights, and the real Qwen3 tokenizer.
Speed does not depend on weight values; scores of random weights mean nothing,
but their agreement between methods does.

Workload: a ~15-token query and 32 documents of 30 to 500 tokens, English and
Chinese mixed, in shuffled order (as a retriever returns them).

Each dtype is run on one model object shared by all methods:
- the model card's loop (left padding, full-vocabulary logits), all documents
  in one padded batch, then in input-order batches of 8;
- LocalReranker with its defaults.

It prints pairs/s, the speed-up over each card loop, the largest score
difference, and achieved GFLOP/s against this machine's measured matmul peak
for the dtype. FLOPs count 2 x non-embedding parameters per real token plus
causal attention (4 x context x heads x head_dim per token and layer), for the
tokens each method must run: every prompt in full for the card loop, the
shared prefix once plus each document's tail for LocalReranker. Padding and
the vocabulary head are not useful work and are not counted.

With ``--peer sentence-transformers`` the same documents are also scored by
sentence-transformers' ``CrossEncoder`` (it loads the checkpoint as a causal LM
with a yes/no logit head; the model card's prompt is given as its chat
template), on two cases: the mixed documents above and ``--long-count``
documents of 4,000 tokens. The peer's scores are checked against ours, and the
two are timed in alternation (ours, peer, ours, peer, ...), best of
``--repeats``, so that load from other work hits both alike.

``--long-case`` runs the long-document case: one document of 32,000 tokens and
20 of 500, with ``max_length=2048``, in ``long_documents="truncate"`` and
``"chunk"`` mode, with the number of windows; then one document of 8k, 16k
and 32k tokens alone in chunk mode, and the ratios of their times (linear cost
gives about 2x per doubling).

The timings are wall-clock on whatever else the machine is running: on a
shared machine, run it twice and trust the better run.

``--compile`` adds ``LocalReranker(compile=True)`` to the peer case, in the
same interleaved loop, and prints its first call (compiling) per case.

``--int8`` adds a float32 LocalReranker whose linear layers ``torch.ao``
quantized to dynamic int8 (a measurement, not an option of LocalReranker) to
the peer case, and prints its score drift against float32 (and ours), with
the pairs of documents each puts in the other order.

``--busy N`` runs the peer case twice: on the machine as it is, then with N
competing single-thread processes (float32 matmul loops) running throughout.
Each line gives the ratio, the share of the bf16 matmul peak measured in the
same run, and the load average; the header gives the date, the CPU model,
whether it has AMX and AVX512-BF16, and the CPUs this process may use.
Outputs are kept in ``benchmarks/results/``.

Measured on 2026-11-30, 2 CPU cores shared with other jobs, bfloat16, the
0.6B width cut to 4 layers (``--layers 4 --dtypes bfloat16 --only peer --peer
sentence-transformers --repeats 2``; see docs/speed.md for every run):

    load 2.9:  mixed:  ours 2.22 s, peer 7.34 s -> 3.30x; 39% of the 1387 GFLOP/s matmul peak
               4x4000: ours 5.44 s, peer 9.26 s -> 1.70x; 41% of the matmul peak
    load 5.4 (with --compile --repeats 3, warm kernel cache):
               mixed:  ours 11.68 s, compiled 6.26 s, peer 12.22 s -> 1.05x, 1.95x
               4x4000: ours 11.91 s, compiled 12.39 s, peer 19.21 s -> 1.61x, 1.55x

and the long-document case (``--layers 2 --only long``, load average 8 to 14):
truncate 24.4 s, chunk 74.9 s with 17 windows for the 32,000-token document;
chunk mode alone 8k 13.8 s, 16k 24.0 s, 32k 41.1 s (ratios 1.74 and 1.72).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from qwen_rerank import LocalReranker
from qwen_rerank.prompt import PREFIX, SUFFIX, format_body
from qwen_rerank.testing import make_tiny_reranker

QUERY = "How does the Great Wall of China protect against invasions from the northern steppe?"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

ENGLISH_TEXT = (
    "the wall was built over many centuries by successive dynasties to guard the northern frontier "
    "soldiers manned watchtowers and signal fires carried warnings across hundreds of miles while "
    "garrisons stored grain and weapons in forts along the route rammed earth stone and brick were "
    "used depending on local materials and the terrain of mountains deserts and plains traders "
    "passed through gates where officials collected taxes and checked documents"
)
CHINESE = (
    "长城是中国古代的军事防御工程历代王朝在北方边境修筑城墙烽火台和关隘士兵驻守在城楼上"
    "用烽火传递敌情城墙用夯土石块和砖建造商人经过关口时缴纳税款并接受检查"
)


BUSY_LOOP = "import torch; torch.set_num_threads(1); a = torch.randn(512, 512)\nwhile True:\n    a @ a"


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` competing processes, each a single-thread float32 matmul loop, for the block's duration."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        if procs:
            time.sleep(2.0)  # let them start and take their share
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def cpu_description() -> str:
    """The CPU model, whether it has AMX and AVX512-BF16, and the CPUs this process may use."""
    model, flags = "unknown CPU", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    amx = "AMX" if "amx_bf16" in flags else "no AMX"
    bf16 = "AVX512-BF16" if "avx512_bf16" in flags else "no AVX512-BF16"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {amx}, {bf16}, {usable} usable CPUs"


@dataclass
class Run:
    name: str
    seconds: float
    scores: list[float]
    flops: float


def build_model(folder: Path, layers: int) -> Path:
    """Save a random model with Qwen3-Reranker-0.6B's architecture and the real tokenizer."""
    return make_tiny_reranker(
        folder,
        hidden_size=1024,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=3072,
        initializer_range=0.02,
    )


def make_documents(tokenizer: transformers.PreTrainedTokenizerBase, count: int, seed: int) -> list[str]:
    """``count`` documents whose token lengths spread evenly over 30..500, half Chinese, shuffled."""
    rng = random.Random(seed)
    words = ENGLISH_TEXT.split()
    documents = []
    for k in range(count):
        target = round(30 + (500 - 30) * k / max(count - 1, 1))
        if k % 2:
            text = "".join(rng.choice(CHINESE) for _ in range(target * 2))
        else:
            text = " ".join(rng.choice(words) for _ in range(target * 2)).capitalize()
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        documents.append(text[: encoding["offset_mapping"][target - 1][1]])
    rng.shuffle(documents)
    return documents


def sized_text(tokenizer: transformers.PreTrainedTokenizerBase, tokens: int, seed: int) -> str:
    """English text of exactly ``tokens`` tokens (by this tokenizer, on its own)."""
    rng = random.Random(seed)
    words = ENGLISH_TEXT.split()
    text = " ".join(rng.choice(words) for _ in range(tokens * 2))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return text[: encoding["offset_mapping"][tokens - 1][1]]


# The model card's prompt as a chat template over the pair roles that CrossEncoder sends.
PEER_TEMPLATE = (
    "{%- set q = (messages | selectattr('role', 'eq', 'query') | first).content -%}"
    "{%- set d = (messages | selectattr('role', 'eq', 'document') | first).content -%}"
    "{%- if q is not string %}{% set q = q[0].text %}{% endif -%}"
    "{%- if d is not string %}{% set d = d[0].text %}{% endif -%}"
    "{{ prefix }}<Instruct>: {{ instruction }}\n<Query>: {{ q }}\n<Document>: {{ d }}{{ suffix }}"
    "{{ '' }}"  # Jinja drops the template's final newline, which the suffix ends with
)


def load_peer(path: Path, dtype: torch.dtype, max_length: int) -> Any:
    """sentence-transformers' CrossEncoder on the checkpoint, with the card's prompt as its template."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        sys.exit('--peer sentence-transformers needs: pip install "qwen-rerank[bench]"')
    template = (
        PEER_TEMPLATE.replace("{{ prefix }}", PREFIX)
        .replace("{{ suffix }}", SUFFIX)
        .replace("{{ instruction }}", INSTRUCTION)
    )
    return CrossEncoder(
        str(path),
        device="cpu",
        max_length=max_length,
        model_kwargs={"dtype": dtype},
        processor_kwargs={"chat_template": template},
    )


def peer_scores(peer: Any, documents: list[str], batch_size: int) -> list[float]:
    """P("yes") by the peer: the sigmoid of its yes-minus-no logit, in float32."""
    raw = peer.predict(
        [(QUERY, doc) for doc in documents],
        batch_size=batch_size,
        activation_fn=torch.nn.Sigmoid(),
        convert_to_tensor=True,
    )
    scores: list[float] = raw.float().reshape(-1).tolist()
    return scores


def interleaved(methods: dict[str, Any], repeats: int) -> dict[str, tuple[float, list[float]]]:
    """Best time and last scores of each method, run in turn ``repeats`` times."""
    best = {name: (float("inf"), []) for name in methods}
    for _ in range(repeats):
        for name, call in methods.items():
            start = time.perf_counter()
            scores = call()
            seconds = time.perf_counter() - start
            best[name] = (min(best[name][0], seconds), list(scores))
    return best  # type: ignore[return-value]


def bench_peer(path: Path, dtype_name: str, documents: list[str], args: argparse.Namespace) -> None:
    """Us against sentence-transformers on the mixed documents and on 4,000-token documents."""
    dtype = getattr(torch, dtype_name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    long_docs = [sized_text(tokenizer, 4000, seed) for seed in range(args.long_count)]
    peak = matmul_peak(dtype)
    ours = LocalReranker(str(path), device="cpu", dtype=dtype_name, max_length=8192)
    peer = load_peer(path, dtype, 8192)
    counter = FlopCounter(ours.model)
    compiled = compiled_reranker(path, dtype_name) if args.compile else None
    fp32, int8 = int8_rerankers(path) if args.int8 else (None, None)
    print(f"\n[{dtype_name}] peer: sentence-transformers CrossEncoder, batch size {args.peer_batch_size}")
    for case, docs in (("mixed", documents), (f"{len(long_docs)}x4000", long_docs)):
        head = len(ours.prompt_tokenizer.encode_head(QUERY, INSTRUCTION))
        lengths = [len(p) for p in ours.prompt_tokenizer.encode_pairs(QUERY, docs, INSTRUCTION, 8192)]
        flops = counter.run(head) + sum(counter.run(n - head, head) for n in lengths)
        ours.score(QUERY, docs[:1], instruction=INSTRUCTION)  # warm-up
        peer_scores(peer, docs[:1], args.peer_batch_size)
        methods = {
            "ours": lambda docs=docs: ours.score(QUERY, docs, instruction=INSTRUCTION),
            "peer": lambda docs=docs: peer_scores(peer, docs, args.peer_batch_size),
        }
        if int8 is not None:
            reference = fp32.score(QUERY, docs, instruction=INSTRUCTION)
            for name, reranker in (("int8", int8), ("ours", ours)):
                scores = reranker.score(QUERY, docs, instruction=INSTRUCTION)
                drift = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
                print(
                    f"{case:>8}: {name} against LocalReranker in float32: max |score diff| {drift:.1e}, "
                    f"{swapped_pairs(scores, reference)} of {len(docs) * (len(docs) - 1) // 2} pairs "
                    "in the other order"
                )
            methods["int8"] = lambda docs=docs: int8.score(QUERY, docs, instruction=INSTRUCTION)
        if compiled is not None:
            start = time.perf_counter()
            compiled.score(QUERY, docs, instruction=INSTRUCTION)  # compiles for any new kind of pass
            print(f"{case:>8}: compiled, first call {time.perf_counter() - start:.1f} s")
            methods["compiled"] = lambda docs=docs: compiled.score(QUERY, docs, instruction=INSTRUCTION)
        for busy in sorted({0, args.busy}):
            with busy_processes(busy):
                best = interleaved(methods, args.repeats)
                load = os.getloadavg()[0]
            for name in sorted(methods.keys() - {"peer"}):
                (t_ours, s_ours), (t_peer, s_peer) = best[name], best["peer"]
                diff = max(abs(a - b) for a, b in zip(s_ours, s_peer, strict=True))
                gflops = flops / t_ours / 1e9
                print(
                    f"{case:>8}, busy {busy}: {name} {t_ours:7.2f} s, peer {t_peer:7.2f} s -> "
                    f"{t_peer / t_ours:.2f}x; {gflops:.0f} GFLOP/s = {100 * gflops / peak:.0f}% of the "
                    f"{peak:.0f} GFLOP/s matmul peak; max |score diff| {diff:.1e}; load {load:.2f}"
                )


def compiled_reranker(path: Path, dtype_name: str) -> LocalReranker:
    """LocalReranker(compile=True), saying whether its on-disk kernel cache starts cold or warm."""
    reranker = LocalReranker(str(path), device="cpu", dtype=dtype_name, max_length=8192, compile=True)
    cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    state = "warm" if cache.is_dir() and any(cache.iterdir()) else "cold"
    print(f"compile=True: kernel cache {cache} ({state}; this model's kernels may still be missing)")
    return reranker


def swapped_pairs(scores: list[float], reference: list[float]) -> int:
    """How many pairs of documents ``scores`` orders the other way round from ``reference``."""
    pairs = itertools.combinations(range(len(scores)), 2)
    return sum((scores[i] - scores[j]) * (reference[i] - reference[j]) < 0 for i, j in pairs)


def int8_rerankers(path: Path) -> tuple[LocalReranker, LocalReranker]:
    """LocalReranker in float32, and one whose linear layers ``torch.ao`` quantized to dynamic int8.

    The int8 one is for measuring, not an option of LocalReranker: its drift
    is printed against the float32 one's scores.
    """
    fp32 = LocalReranker(str(path), device="cpu", dtype="float32", max_length=8192)
    int8 = LocalReranker(str(path), device="cpu", dtype="float32", max_length=8192)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantized tensors are deprecated
        torch.ao.quantization.quantize_dynamic(int8.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return fp32, int8


def bench_long_case(path: Path, dtype_name: str, args: argparse.Namespace) -> None:
    """One 32,000-token document among 20 of 500, max_length=2048: truncate against chunk; linear cost."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    docs = [sized_text(tokenizer, 32000, 99)] + [sized_text(tokenizer, 500, k) for k in range(20)]
    common = {"device": "cpu", "dtype": dtype_name, "max_length": 2048}
    truncate = LocalReranker(str(path), **common)
    chunk = LocalReranker(str(path), long_documents="chunk", **common)
    plan = chunk._plan_windows(QUERY, docs, INSTRUCTION)
    windows = 0 if plan is None else plan.owners.count(0)
    print(f"\n[{dtype_name}] long documents: 1 x 32,000 + 20 x 500 tokens, max_length=2048")
    best = interleaved(
        {
            "truncate": lambda: truncate.rerank(QUERY, docs, instruction=INSTRUCTION),
            "chunk": lambda: chunk.rerank(QUERY, docs, instruction=INSTRUCTION),
        },
        args.repeats,
    )
    results = {name: {r.index: r for r in rs} for name, (_, rs) in best.items()}  # type: ignore[attr-defined]
    cut, whole = results["truncate"][0], results["chunk"][0]
    print(
        f"truncate {best['truncate'][0]:.2f} s (document 0 truncated: {cut.truncated}, "
        f"score {cut.score:.4f}); "
        f"chunk {best['chunk'][0]:.2f} s, {windows} windows for the long document "
        f"(best span {whole.span}, score {whole.score:.4f}); load {os.getloadavg()[0]:.2f}"
    )
    lengths = (8000, 16000, 32000)
    alone = {n: [docs[0][: len(sized_text(tokenizer, n, 99))]] for n in lengths}
    times = interleaved(
        {str(n): lambda n=n: chunk.score(QUERY, alone[n], instruction=INSTRUCTION) for n in lengths},
        args.repeats,
    )
    line = ", ".join(f"{n // 1000}k {times[str(n)][0]:.2f} s" for n in lengths)
    ratios = [times[str(b)][0] / times[str(a)][0] for a, b in itertools.pairwise(lengths)]
    print(f"chunk mode alone: {line}; ratios 16k/8k {ratios[0]:.2f}, 32k/16k {ratios[1]:.2f} (linear: 2.00)")


def model_card_loop(
    model: torch.nn.Module,
    tokenizer: transformers.PreTrainedTokenizerBase,
    documents: list[str],
    batch_size: int,
    max_length: int = 8192,
) -> list[float]:
    """The Qwen3-Reranker model card's scoring code, batch by batch in input order."""
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    pairs = [format_body(QUERY, doc, INSTRUCTION) for doc in documents]
    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        inputs = tokenizer(
            pairs[start : start + batch_size],
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(prefix) - len(suffix),
        )
        inputs["input_ids"] = [prefix + ids + suffix for ids in inputs["input_ids"]]
        batch = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        with torch.no_grad():
            logits = model(**batch).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
        scores.extend(torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().tolist())
    return scores


def matmul_peak(dtype: torch.dtype, size: int = 4096, trials: int = 6) -> float:
    """Best GFLOP/s of a large square matmul in ``dtype`` on this machine."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best / 1e9


def available_memory() -> int:
    """Bytes of memory the OS can still give (MemAvailable), or a large number where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 50


class FlopCounter:
    """Useful FLOPs of a forward pass over given tokens of the model."""

    def __init__(self, model: Any) -> None:
        config = model.config
        embeddings = model.get_input_embeddings().weight
        self.per_token = 2 * sum(p.numel() for p in model.parameters() if p is not embeddings)
        self.attention = 4 * config.num_attention_heads * config.head_dim * config.num_hidden_layers

    def run(self, new_tokens: int, context_before: int = 0) -> float:
        """FLOPs of ``new_tokens`` that continue ``context_before`` cached tokens, causally."""
        contexts = sum(context_before + t for t in range(1, new_tokens + 1))
        return float(self.per_token * new_tokens + self.attention * contexts)


def timed(name: str, flops: float, score: object, repeats: int) -> Run:
    best, scores = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = score()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return Run(name, best, list(scores), flops)


def bench_card_loops(
    path: Path, dtype: torch.dtype, documents: list[str], args: argparse.Namespace
) -> tuple[dict[str, Run], list[int], FlopCounter]:
    """The model card's loop on the model as transformers loads it; freed on return."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), padding_side="left")
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.eval()
    counter = FlopCounter(model)
    fixed = len(tokenizer.encode(PREFIX + SUFFIX))
    bodies = tokenizer([format_body(QUERY, doc, INSTRUCTION) for doc in documents])["input_ids"]
    lengths = [fixed + len(ids) for ids in bodies]
    card_flops = sum(counter.run(length) for length in lengths)
    print(f"{len(documents)} documents, prompt tokens {min(lengths)}..{max(lengths)} (total {sum(lengths)})")
    model_card_loop(model, tokenizer, documents[:2], 2)  # warm-up
    runs = {}
    logits_bytes = len(lengths) * max(lengths) * model.config.vocab_size * dtype.itemsize
    if not args.skip_full_batch and logits_bytes > available_memory() * 0.6:
        print(f"skipping the one-batch card loop: its logits alone take {logits_bytes / 2**30:.1f} GiB")
    elif not args.skip_full_batch:
        runs["card-1-batch"] = timed(
            "model card, one padded batch",
            card_flops,
            lambda: model_card_loop(model, tokenizer, documents, len(documents)),
            args.repeats,
        )
    runs["card-batch-8"] = timed(
        "model card, batches of 8",
        card_flops,
        lambda: model_card_loop(model, tokenizer, documents, 8),
        args.repeats,
    )
    return runs, lengths, counter


def bench_dtype(path: Path, dtype_name: str, args: argparse.Namespace) -> dict[str, Run]:
    """Time every method in one dtype on the same checkpoint, one model in memory at a time."""
    dtype = getattr(torch, dtype_name)
    print(f"\n[{dtype_name}]")
    peak = matmul_peak(dtype)
    documents = make_documents(
        transformers.AutoTokenizer.from_pretrained(str(path)), args.documents, args.seed
    )
    runs, lengths, counter = bench_card_loops(path, dtype, documents, args)

    reranker = LocalReranker(
        str(path), device="cpu", dtype=dtype_name, max_batch_tokens=args.max_batch_tokens
    )
    head = len(reranker.prompt_tokenizer.encode_head(QUERY, INSTRUCTION))
    ours_flops = counter.run(head) + sum(counter.run(length - head, head) for length in lengths)
    print(f"LocalReranker: shared head {head} tokens, budget {reranker.max_batch_tokens} tokens")
    reranker.score(QUERY, documents[:2], instruction=INSTRUCTION)  # warm-up
    runs["local"] = timed(
        "LocalReranker",
        ours_flops,
        lambda: reranker.score(QUERY, documents, instruction=INSTRUCTION),
        args.repeats,
    )
    report(runs, max(peak, matmul_peak(dtype)), dtype_name)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=28, help="decoder layers (28 is the real 0.6B)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32,bfloat16")
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method; the best counts")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="LocalReranker's budget")
    parser.add_argument("--skip-full-batch", action="store_true", help="skip the one-padded-batch card loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer", choices=["sentence-transformers"], help="also time this peer")
    parser.add_argument("--peer-batch-size", type=int, default=32, help="the peer's batch size")
    parser.add_argument("--long-count", type=int, default=4, help="4,000-token documents in the peer case")
    parser.add_argument("--long-case", action="store_true", help="run the long-document (chunk) case")
    parser.add_argument("--only", choices=["peer", "long"], help="skip the card-loop comparison")
    parser.add_argument(
        "--compile", action="store_true", help="peer case: also time LocalReranker(compile=True)"
    )
    parser.add_argument(
        "--int8", action="store_true", help="peer case: also time torch.ao dynamic int8 (float32 model)"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="peer case: also run with N competing single-thread processes"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_description()}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine slows every number)")
    results: dict[str, dict[str, Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = build_model(Path(tmp), args.layers)
        print(f"model: {args.layers} layers, built in {time.perf_counter() - started:.0f} s")
        for dtype_name in args.dtypes.split(","):
            if args.only is None:
                results[dtype_name] = bench_dtype(path, dtype_name, args)
            if args.peer and args.only in (None, "peer"):
                documents = make_documents(
                    transformers.AutoTokenizer.from_pretrained(str(path)), args.documents, args.seed
                )
                bench_peer(path, dtype_name, documents, args)
            if args.long_case or args.only == "long":
                bench_long_case(path, dtype_name, args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if "float32" in results and "bfloat16" in results:
        fp32, bf16 = results["float32"]["local"], results["bfloat16"]["local"]
        drift = max(abs(a - b) for a, b in zip(fp32.scores, bf16.scores, strict=True))
        same_order = sorted(range(len(fp32.scores)), key=lambda i: -fp32.scores[i]) == sorted(
            range(len(bf16.scores)), key=lambda i: -bf16.scores[i]
        )
        print(
            f"\nbf16 vs fp32 (LocalReranker): {fp32.seconds / bf16.seconds:.2f}x the speed, "
            f"max |score drift| {drift:.2e}, same ranking: {same_order} "
            f"(fp32 scores span {min(fp32.scores):.4f}..{max(fp32.scores):.4f})"
        )


def report(runs: dict[str, Run], peak: float, dtype_name: str) -> None:
    local = runs["local"]
    pairs = len(local.scores)
    print(f"matmul peak ({dtype_name}, 4096^3, best of runs): {peak:.0f} GFLOP/s")
    print(f"{'method':32} {'pairs/s':>8} {'seconds':>8} {'GFLOP/s':>8} {'% peak':>7} {'max |diff|':>11}")
    for run in runs.values():
        gflops = run.flops / run.seconds / 1e9
        diff = max(abs(a - b) for a, b in zip(run.scores, runs["card-batch-8"].scores, strict=True))
        print(
            f"{run.name:32} {pairs / run.seconds:8.3f} {run.seconds:8.1f} {gflops:8.1f} "
            f"{100 * gflops / peak:6.1f}% {diff:11.2e}"
        )
    for key, run in runs.items():
        if key != "local":
            print(f"speed-up of LocalReranker over '{run.name}': {run.seconds / local.seconds:.2f}x")
    print("(max |diff| is against the card loop in batches of 8, in the same dtype)")


if __name__ == "__main__":
    main()
