"""vLLM's multimodal score input (``ScoreMultiModalParam``), as the fake server checks and reads it.

vLLM takes a query or document as a str or as ``{"content": [part, ...]}``, each part
``{"type": "text", "text": ...}``, ``{"type": "image_url", "image_url": {"url": ...}}`` or
``{"type": "video_url", "video_url": {"url": ...}}`` (``vllm/entrypoints/pooling/scoring/typing.py``).
The fake scores such an item as text: its text parts, each image or video a mark named by a
checksum of its URL, so that the same image always scores the same.
"""

from __future__ import annotations

import zlib
from typing import Any

from qwen_rerank.testing.fake_vllm._dialects import Refusal, error_body

__all__ = ["as_text"]

_URL_PARTS = {"image_url": "image", "video_url": "video"}


def as_text(api: str, item: Any, what: str) -> str:
    """``item`` (a str, or on vLLM a content dict) as the text the fake scores.

    Raises:
        Refusal: ``item`` is neither, or a part is malformed (HTTP 400, as vLLM's validation).
    """
    if isinstance(item, str):
        return item
    if api != "vllm" or not isinstance(item, dict) or set(item) != {"content"}:
        raise Refusal(400, error_body(f"{what} must be a string or a {{'content': [...]}} object", "error"))
    parts = item["content"]
    if not isinstance(parts, list) or not parts:
        raise Refusal(400, error_body(f"{what}.content must be a non-empty list", "error"))
    return "".join(_part_text(part, f"{what}.content[{k}]") for k, part in enumerate(parts))


def _part_text(part: Any, where: str) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return str(part["text"])
    if kind in _URL_PARTS:
        url = (part.get(kind) or {}).get("url") if isinstance(part.get(kind), dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://", f"data:{_URL_PARTS[kind]}/")):
            return f"<{_URL_PARTS[kind]} {zlib.crc32(url.encode()):08x}>"
    raise Refusal(400, error_body(f"{where} is not a valid text, image_url or video_url part", "error"))
