"""Sub-requests keep to a per-request cap on documents holding an image, and on those holding a video."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest

from qwen_rerank import RemoteReranker
from qwen_rerank.remote._splitting import RequestLimits, split_request
from qwen_rerank.testing.fake_hosted import FakeHostedServer

BUDGET = RequestLimits("dashscope", 100, 120000, 8000, None, 40, 4)


def _check(bounds: list[tuple[int, int]], n: int, images: list[bool], videos: list[bool]) -> None:
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    for start, end in bounds:
        assert end - start <= 100 and sum(images[start:end]) <= 40 and sum(videos[start:end]) <= 4


@pytest.mark.parametrize("seed", range(20))
def test_random_mixes_keep_every_cap_in_document_order(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 400)
    images = [rng.random() < 0.5 for _ in range(n)]
    videos = [rng.random() < 0.05 for _ in range(n)]
    bounds = split_request(10, [rng.randint(1, 50) for _ in range(n)], BUDGET, images=images, videos=videos)
    _check(bounds, n, images, videos)
    needed = max(-(-n // 100), -(-sum(images) // 40), -(-sum(videos) // 4))
    assert len(bounds) >= needed


def test_the_fewest_requests_when_one_kind_decides() -> None:
    assert split_request(1, [1] * 41, BUDGET, images=[True] * 41) == [(0, 21), (21, 41)]
    assert len(split_request(1, [1] * 8, BUDGET, videos=[True] * 8)) == 2
    assert split_request(1, [1] * 100, BUDGET, images=[False] * 100) == [(0, 100)]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key="sk-split") as running:
        yield running


def test_a_query_with_an_image_counts_in_every_document(server: FakeHostedServer) -> None:
    server.reset()
    with RemoteReranker(server.url, api="dashscope", model="qwen3-vl-rerank", api_key="sk-split") as reranker:
        scores = reranker.score({"image": "https://img.example/q.png"}, [f"caption {k}" for k in range(45)])
    assert len(scores) == 45
    assert sorted(len(r.body["input"]["documents"]) for r in server.requests) == [22, 23]
