"""Spans of a multimodal call carry no image: no path, no URL, no bytes; text only with trace_content."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen_rerank import LocalReranker

CAPTION = "caption-7f3a private words"


@pytest.fixture(scope="module")
def vl_reranker(tiny_vl_path: Path) -> LocalReranker:
    return LocalReranker(tiny_vl_path, device="cpu")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _attribute_text(exporter: Any) -> str:
    found = exporter.get_finished_spans()
    assert found, "no span was recorded"
    return "\n".join(f"{key}={value}" for span in found for key, value in (span.attributes or {}).items())


def test_spans_hold_no_image_and_text_only_when_asked(
    vl_reranker: LocalReranker, spans: Any, tmp_path: Path
) -> None:
    data = _png()
    path = tmp_path / "secret-folder" / "photo.png"
    path.parent.mkdir()
    path.write_bytes(data)
    documents: list[Any] = [{"image": data, "text": CAPTION}, {"image": str(path)}, "plain"]
    vl_reranker.rerank("q", documents)
    hidden = _attribute_text(spans)
    encoded = base64.b64encode(data).decode()[:40]
    assert CAPTION not in hidden and "secret-folder" not in hidden and encoded not in hidden
    assert "document.score" in hidden

    spans.clear()
    vl_reranker.trace_content = True
    try:
        vl_reranker.rerank("q", documents)
    finally:
        del vl_reranker.trace_content
    shown = _attribute_text(spans)
    assert CAPTION in shown and "<image>" in shown
    assert "secret-folder" not in shown and encoded not in shown
