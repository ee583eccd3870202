"""DashScope's multimodal reranker, ``qwen3-vl-rerank``, as its API reference describes it.

Same path and reply as ``qwen3-rerank``; the request differs:

- ``input.documents``: each an object with ``text``, ``image`` and/or ``video`` keys (the
  reference's example); ``input.query``: a string, or such an object (its image query).
- ``image``: an ``http(s)://`` URL, or a ``data:image/<type>;base64,...`` URL of a listed
  format (JPEG, PNG, WEBP, BMP, TIFF, ICO, DIB, ICNS, SGI). ``video``: an ``http(s)://`` URL
  only. Nothing is ever fetched: a URL is checked by its form.
- ``parameters.fps``: a positive number, when given.
- Limits: at most 100 documents, 40 of them holding an image, 4 holding a video (400
  ``InvalidParameter``; the message is a stand-in); at most 120,000 text tokens counted as
  query tokens x documents + document tokens; a text over 8,000 tokens is cut silently
  (recorded in ``truncations``). Image and video tokens are not counted.

Scores are fake and deterministic: a hash of the instruction, the query and the document
(and ``fps`` for a video), so equal content gets equal scores and any two documents differ.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
import zlib
from typing import Any

from qwen_rerank.testing.fake_hosted._common import FakeProvider, ranked

__all__ = ["VL_LIMITS", "VL_MODELS", "dashscope_vl"]

VL_MODELS = ("qwen3-vl-rerank",)
VL_LIMITS: dict[str, int | None] = {
    "max_documents": 100,
    "max_image_documents": 40,
    "max_video_documents": 4,
    "max_request_tokens": 120000,
    "max_item_tokens": 8000,
}
# The official Qwen3-VL-Reranker instruction; what DashScope applies without "instruct" is not documented.
VL_DEFAULT = "Given a search query, retrieve relevant candidates that answer the query."
_IMAGE_TYPES = frozenset(
    {"jpeg", "jpg", "png", "webp", "bmp", "x-ms-bmp", "tiff", "x-icon", "vnd.microsoft.icon", "icns", "sgi"}
)
_KEYS = frozenset({"text", "image", "video"})


def dashscope_vl(fake: FakeProvider, number: int, body: dict[str, Any]) -> dict[str, Any]:
    """The reply to one ``qwen3-vl-rerank`` request, or the `Failure` the reference implies."""
    data, params = body.get("input"), body.get("parameters") or {}
    if not isinstance(data, dict) or not isinstance(params, dict):
        raise fake.invalid("input and parameters must be objects")
    query = data.get("query")
    if not (isinstance(query, str) and query):
        query = _element(fake, query, "input.query")
    documents = data.get("documents")
    if not isinstance(documents, list) or not documents:
        raise fake.invalid("Input documents is required: input.documents")
    items = [_element(fake, doc, f"input.documents[{i}]") for i, doc in enumerate(documents)]
    _check_counts(fake, items)
    fps = params.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise fake.invalid("parameters.fps must be a positive number")
    query_tokens = fake.tokens(_text(query))
    used = query_tokens * len(items) + sum(fake.tokens(_text(item)) for item in items)
    cap = fake.vl_limit("max_request_tokens")
    if cap is not None and used > cap:
        raise fake.invalid(f"Range of input length should be [1, {cap}]")
    query = _cut(fake, number, "query", query)
    items = [_cut(fake, number, f"document {i}", item) for i, item in enumerate(items)]
    instruct = params.get("instruct")
    instruction = instruct if isinstance(instruct, str) and fake.applies_instruction else VL_DEFAULT
    scores = [_score(instruction, query, item, fps) for item in items]
    return {
        "output": {"results": ranked(scores, documents, params)},
        "usage": {"total_tokens": used},
        "request_id": str(uuid.uuid4()),
    }


def _element(fake: FakeProvider, value: Any, where: str) -> dict[str, str]:
    """One element object, checked: known keys, a text, an image URL or data URL, a video URL."""
    if not isinstance(value, dict) or not value or not set(value) <= _KEYS:
        raise fake.invalid(f"{where} must be an object with text, image or video")
    if not all(isinstance(v, str) for v in value.values()):
        raise fake.invalid(f"{where}: text, image and video must be strings")
    image, video = value.get("image"), value.get("video")
    if image is not None and not (_is_url(image) or _is_data_url(image)):
        raise fake.invalid(f"{where}.image must be a URL or a base64 image of a supported format")
    if video is not None and not _is_url(video):
        raise fake.invalid(f"{where}.video must be a URL")
    return value


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value.split("/", 3)[2]) > 0


def _is_data_url(value: str) -> bool:
    head, sep, payload = value.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        return False
    if head[len("data:image/") : -len(";base64")].lower() not in _IMAGE_TYPES:
        return False
    try:
        return len(base64.b64decode(payload, validate=True)) > 0
    except (binascii.Error, ValueError):
        return False


def _check_counts(fake: FakeProvider, items: list[dict[str, str]]) -> None:
    counts = (
        ("", len(items), "max_documents"),
        ("image ", sum("image" in item for item in items), "max_image_documents"),
        ("video ", sum("video" in item for item in items), "max_video_documents"),
    )
    for kind, count, name in counts:
        most = fake.vl_limit(name)
        if most is not None and count > most:
            raise fake.invalid(
                f"<400> InternalError.Algo.InvalidParameter: Value error, batch size of {kind}documents is "
                f"invalid, it should not be larger than {most}.: input.documents"
            )


def _text(item: str | dict[str, str]) -> str:
    return item if isinstance(item, str) else item.get("text", "")


def _cut(fake: FakeProvider, number: int, what: str, item: Any) -> Any:
    cap = fake.vl_limit("max_item_tokens")
    if isinstance(item, str):
        return fake.cut(number, what, item, cap)
    if "text" not in item:
        return item
    return {**item, "text": fake.cut(number, what, item["text"], cap)}


def _score(instruction: str, query: Any, item: dict[str, str], fps: Any) -> float:
    key = [instruction, query, item, fps if "video" in item else None]
    return zlib.crc32(json.dumps(key, sort_keys=True).encode()) / 2**32
