"""Which server answers at a URL, from what it says besides reranking; `check` judges by it.

Each server tells itself apart by a GET at its root (read under a rerank reply's caps and
time, by [`server_get`][qwen_rerank.remote.server_get]):

- llama.cpp's ``llama-server``: ``GET /props`` names its slots (``total_slots``) and the
  ``default_generation_settings`` of each, whose ``n_ctx`` is the context of one slot;
- vLLM, SGLang and Infinity: each model card of ``GET /v1/models`` (Infinity: ``/models``)
  says ``owned_by`` ``"vllm"``, ``"sglang"`` or ``"infinity"`` (llama-server: ``"llamacpp"``);
- Text Embeddings Inference: ``GET /info`` names ``model_type`` and ``max_client_batch_size``;
- a web page (a login page, a proxy's page) answers a GET with HTML, where a server answers JSON.

A server that answers none of these (or not in time) is not recognised, and `check` then
judges by the replies alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwen_rerank.remote import RemoteReranker, ServerAnswer, server_get

__all__ = ["COMPATIBLE_APIS", "Server", "recognise"]

LLAMA = "llama-server"
PAGE = "a web page"

COMPATIBLE_APIS: dict[str, tuple[str, ...]] = {
    LLAMA: ("llamacpp",),
    "vllm": ("vllm", "cohere"),  # vLLM serves /v2/rerank in Cohere's shape too
    "sglang": ("sglang",),
    "tei": ("tei",),
    "infinity": ("infinity", "cohere"),
}
"""The ``--api`` values that speak each recognised server's wire format; the first is its own."""

_LABELS = {
    LLAMA: "llama.cpp's llama-server",
    "vllm": "vLLM",
    "sglang": "SGLang",
    "tei": "TEI",
    "infinity": "Infinity",
}
_OWNERS = {"vllm": "vllm", "sglang": "sglang", "infinity": "infinity", "llamacpp": LLAMA}


@dataclass(frozen=True)
class Server:
    """What answers at the URL.

    Attributes:
        name: ``"llama-server"``, ``"vllm"``, ``"sglang"``, ``"tei"``, ``"infinity"``,
            ``"a web page"`` (HTML answers a GET: not a server's API), or ``None``: not recognised.
        evidence: How it was told, for a message.
        slot_tokens: llama-server: the context of one slot (``/props``'s ``n_ctx``).
        slots: llama-server: its slots (``-np``), which share ``-c``.
    """

    name: str | None
    evidence: str = ""
    slot_tokens: int | None = None
    slots: int | None = None

    @property
    def label(self) -> str:
        return _LABELS.get(self.name or "", self.name or "an unrecognised server")

    def speaks(self, api: str) -> bool:
        """Whether ``api`` is a wire format this server speaks (an unrecognised one: assumed so)."""
        return api in COMPATIBLE_APIS.get(self.name or "", (api,))

    @property
    def own_api(self) -> str | None:
        return COMPATIBLE_APIS[self.name][0] if self.name in COMPATIBLE_APIS else None


def recognise(reranker: RemoteReranker) -> Server:
    """The server at ``reranker``'s (first) URL, from at most four GETs; it stops at one unanswered."""
    props = server_get(reranker, "/props")
    if props is None:
        return Server(None, "it does not answer GET /props")
    llama = _llama_server(props, reranker)
    if llama is not None:
        return llama
    for path, read in (("/v1/models", _owner), ("/info", _tei), ("/models", _owner)):
        answer = server_get(reranker, path)
        if answer is None:
            break
        found = _page(answer, path) or read(answer.json(), path)
        if found is not None:
            return found
    return Server(None, "no GET it answers names it")


def _page(answer: ServerAnswer, path: str) -> Server | None:
    if answer.status == 200 and answer.is_page:
        return Server(PAGE, f"GET {path} answers with a web page (HTML)")
    return None


def _llama_server(props: ServerAnswer, reranker: RemoteReranker) -> Server | None:
    page = _page(props, "/props")
    if page is not None:
        return page
    data = props.json()
    if isinstance(data, dict) and "total_slots" in data and "default_generation_settings" in data:
        settings = data["default_generation_settings"]
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        slots = data["total_slots"]
        return Server(
            LLAMA,
            "its /props names its slots",
            n_ctx if _count(n_ctx) else None,
            slots if _count(slots) else None,
        )
    if isinstance(data, dict):  # an older llama-server's /props, told by its /health
        health = server_get(reranker, "/health")
        if health is not None and _is_ok(health.json()):
            return Server(LLAMA, "its /props and /health answer as llama-server's")
    return None


def _owner(data: Any, path: str) -> Server | None:
    cards = data.get("data") if isinstance(data, dict) else None
    if not isinstance(cards, list):
        return None
    for card in cards:
        owner = card.get("owned_by") if isinstance(card, dict) else None
        if isinstance(owner, str) and owner in _OWNERS:
            return Server(_OWNERS[owner], f"GET {path} says owned_by {owner!r}")
    return None


def _tei(data: Any, path: str) -> Server | None:
    if isinstance(data, dict) and "model_type" in data and "max_client_batch_size" in data:
        return Server("tei", f"GET {path} answers as Text Embeddings Inference's")
    return None


def _is_ok(data: Any) -> bool:
    return isinstance(data, dict) and data.get("status") == "ok"


def _count(value: Any) -> bool:
    return type(value) is int and value > 0
