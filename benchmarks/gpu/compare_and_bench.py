"""Steps 5 and 6 of vllm_end_to_end.sh: VLLMReranker against LocalReranker, then throughput.

    python benchmarks/gpu/compare_and_bench.py --model DIR --server-a URL --server-b URL

Exits 1 when a score differs from LocalReranker's (bf16) by more than 2e-3, or when the
rankings differ beyond pairs that tie within that tolerance.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

from qwen_rerank import LocalReranker, VLLMReranker

QUERY = "What is the capital of China, and what is it known for?"
TOLERANCE = 2e-3


def mixed_documents(count: int = 50, seed: int = 0) -> list[str]:
    """Mixed-length English and CJK documents, from one sentence to a few thousand characters."""
    rng = random.Random(seed)
    english = [
        "The capital of China is Beijing.",
        "Beijing is known for the Forbidden City and the Temple of Heaven.",
        "Gravity is a force that attracts two bodies towards each other.",
        "Paris is the capital of France and sits on the Seine.",
        "The Great Wall of China was built over many centuries.",
    ]
    cjk = [
        "北京是中华人民共和国的首都。",
        "故宫位于北京市中心。",
        "东京是日本的首都。",
        "서울은 대한민국의 수도이다.",
    ]
    docs = []
    for i in range(count):
        pool = cjk if i % 3 == 0 else english
        docs.append(" ".join(rng.choice(pool) for _ in range(rng.choice([1, 2, 5, 20, 80, 200]))))
    return docs


def same_ranking(a: list[float], b: list[float]) -> bool:
    """Orders agree on every pair whose scores differ by more than the tolerance in both."""
    n = len(a)
    return all(
        (a[i] - a[j]) * (b[i] - b[j]) >= 0
        for i in range(n)
        for j in range(i + 1, n)
        if abs(a[i] - a[j]) > TOLERANCE and abs(b[i] - b[j]) > TOLERANCE
    )


def parity(model: str, servers: dict[str, tuple[str, str]]) -> bool:
    import torch

    docs = mixed_documents()
    local = LocalReranker(model, device="cuda", dtype=torch.bfloat16).score(QUERY, docs)
    ok = True
    for label, (url, template) in servers.items():
        with VLLMReranker(url, template=template, tokenizer=model) as remote:  # type: ignore[arg-type]
            scores = remote.score(QUERY, docs)
        worst = max(abs(x - y) for x, y in zip(scores, local, strict=True))
        ranked = same_ranking(scores, local)
        good = worst <= TOLERANCE and ranked
        ok &= good
        print(
            f"{label:<28} max |remote - local| = {worst:.2e}  same ranking: {ranked}  "
            f"{'ok' if good else 'FAIL'}"
        )
    return ok


def three_hundred_token_documents(model: str, count: int = 100) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    words = " ".join(mixed_documents(200, seed=1)).split()
    docs = []
    for i in range(count):
        ids = tokenizer(" ".join(words[i * 7 : i * 7 + 600]), add_special_tokens=False)["input_ids"][:300]
        docs.append(tokenizer.decode(ids))
    return docs


async def throughput(url: str, docs: list[str], concurrency: int, calls: int) -> tuple[float, float]:
    async with VLLMReranker(url, max_concurrency=8, timeout=300) as reranker:
        await reranker.arerank(QUERY, docs)  # warm up
        left = calls

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await reranker.arerank(QUERY, docs)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return calls / elapsed, calls * len(docs) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", required=True)
    parser.add_argument("--server-a", required=True, help="served without a score template")
    parser.add_argument(
        "--server-b", required=True, help="served with --chat-template set to server_template_path()"
    )
    args = parser.parse_args()
    ok = parity(
        args.model,
        {"A, template=client": (args.server_a, "client"), "B, template=server": (args.server_b, "server")},
    )
    docs = three_hundred_token_documents(args.model)
    print("\nthroughput, 100 documents of 300 tokens per request (server A, template=client)")
    print(f"{'concurrency':>11}  {'requests/s':>10}  {'pairs/s':>9}")
    for concurrency in (1, 8, 32):
        requests, pairs = asyncio.run(
            throughput(args.server_a, docs, concurrency, calls=max(8, 4 * concurrency))
        )
        print(f"{concurrency:>11}  {requests:>10.2f}  {pairs:>9.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
