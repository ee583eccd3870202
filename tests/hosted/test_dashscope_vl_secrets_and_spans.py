"""A qwen3-vl-rerank call shows no key and no image (bytes, path) or caption: in errors, logs or spans."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen_rerank import APIStatusError, InvalidInputError, RemoteReranker
from qwen_rerank.media import MediaLimits
from qwen_rerank.testing.fake_hosted import FakeHostedServer

KEY = "sk-vl-span-secret-2718"
CAPTION = "caption-5e1f private words"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
ENCODED = base64.b64encode(PNG).decode()[:40]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHostedServer]:
    with FakeHostedServer("dashscope", api_key=KEY) as running:
        yield running


@pytest.fixture
def photo(tmp_path: Path) -> str:
    path = tmp_path / "secret-folder" / "photo.png"
    path.parent.mkdir()
    path.write_bytes(PNG)
    return str(path)


def _shown(spans: Any, caplog: pytest.LogCaptureFixture, *more: object) -> str:
    attributes = [f"{k}={v}" for s in spans.get_finished_spans() for k, v in (s.attributes or {}).items()]
    return "\n".join([*attributes, caplog.text, *(str(m) for m in more), *(repr(m) for m in more)])


async def test_a_retried_and_a_failed_call_show_no_key_and_no_image(
    server: FakeHostedServer, spans: Any, caplog: pytest.LogCaptureFixture, photo: str, mode: str
) -> None:
    server.reset()
    server.add_fault("rate_limit", retry_after="0.01")
    caplog.set_level(logging.DEBUG)
    documents: list[Any] = [{"image": PNG, "text": CAPTION}, {"image": photo}, "plain"]
    with RemoteReranker(
        server.url, api="dashscope", model="qwen3-vl-rerank", api_key=KEY, retry_backoff=0.01
    ) as reranker:
        if mode == "sync":
            reranker.rerank("q", documents)
        else:
            await reranker.arerank("q", documents)
        server.add_fault("status", status=400, code="InvalidParameter", message="bad input")
        with pytest.raises(APIStatusError) as failed:
            reranker.rerank("q", documents)
    assert server.requests[1].body["input"]["documents"][0]["image"].startswith("data:image/png;base64,")
    assert "retry 1/3" in caplog.text  # the 429 was logged
    shown = _shown(spans, caplog, failed.value, failed.value.__cause__, reranker)
    assert "document.score" in shown or "qwen_rerank.attempts" in shown
    for secret in (KEY, ENCODED, "secret-folder", CAPTION):
        assert secret not in shown


def test_an_image_refused_before_sending_is_named_by_index_only(
    server: FakeHostedServer, caplog: pytest.LogCaptureFixture, photo: str
) -> None:
    server.reset()
    caplog.set_level(logging.DEBUG)
    with RemoteReranker(
        server.url,
        api="dashscope",
        model="qwen3-vl-rerank",
        api_key=KEY,
        media_limits=MediaLimits(max_bytes=len(PNG) - 1),
    ) as small:
        for image in (PNG, photo):
            with pytest.raises(InvalidInputError, match=r"documents\[1\]'s image") as info:
                small.score("q", ["fine", {"image": image, "text": CAPTION}])
            for secret in (KEY, ENCODED, "secret-folder", CAPTION):
                assert secret not in str(info.value) and secret not in caplog.text
    assert server.requests == []
