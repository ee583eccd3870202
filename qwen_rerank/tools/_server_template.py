"""The prompt a vLLM server's ``--chat-template`` renders for a pair, read back from the server.

vLLM renders its scoring template for ``/v1/rerank`` the way ``/tokenize`` renders the same
messages, so `rendered_prompt` asks ``/tokenize`` for the pair's tokens and ``/detokenize``
for their text. Both requests go out through the reranker's own connections, headers and
caps ([`server_post`][qwen_rerank.remote.server_post]).
"""

from __future__ import annotations

from typing import Any

from qwen_rerank.prompt import format_prompt, server_template_path
from qwen_rerank.remote import RemoteReranker, server_post
from qwen_rerank.tools._findings import OTHER_INSTRUCTION, RELEVANT, Finding, Probe

__all__ = ["first_difference", "rendered_prompt", "server_template_finding"]


def rendered_prompt(
    reranker: RemoteReranker, query: str, document: str, instruction: str
) -> tuple[str, int] | None:
    """The prompt the server renders for ``(query, document)`` under ``instruction``, and its tokens.

    ``None`` where the server has no ``/tokenize`` or ``/detokenize``, or answers them oddly.
    """
    messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
    body = {"messages": messages, "chat_template_kwargs": {"instruction": instruction}}
    answer = server_post(reranker, "/tokenize", body)
    tokens = answer.json() if answer is not None else None
    ids = tokens.get("tokens") if isinstance(tokens, dict) else None
    if not isinstance(ids, list) or not ids:
        return None
    answer = server_post(reranker, "/detokenize", {"tokens": ids})
    text = answer.json() if answer is not None else None
    rendered = text.get("prompt") if isinstance(text, dict) else None
    return (rendered, len(ids)) if isinstance(rendered, str) else None


def first_difference(rendered: str, card: str) -> int:
    """The index of the first character where ``rendered`` and ``card`` differ."""
    pairs = enumerate(zip(rendered, card, strict=False))
    return next((i for i, (a, b) in pairs if a != b), min(len(rendered), len(card)))


def server_template_finding(probe: Probe) -> Finding:
    """vLLM only: the prompt its `--chat-template` renders for a pair, against the model card's."""
    if probe.api != "vllm":
        return Finding("server template", "ok", f"not checked for api={probe.api!r}")
    query, document = RELEVANT
    read = (
        None if probe.base_url is None else rendered_prompt(probe.chosen, query, document, OTHER_INSTRUCTION)
    )
    if read is None:
        return Finding("server template", "ok", "the server's template cannot be read (no /tokenize)")
    rendered, count = read
    if "<Document>: " not in rendered:
        return Finding(
            "server template", "ok", "the server renders no reranker template", data={"wraps": False}
        )
    card = format_prompt(query, document, OTHER_INSTRUCTION)
    data: dict[str, Any] = {"wraps": True, "server_tokens": count, "exact": rendered == card}
    if rendered == card:
        return Finding(
            "server template", "ok", "its --chat-template renders the model card's prompt", data=data
        )
    at = first_difference(rendered, card)
    data["differs_at"] = at
    ending = " (it ends without the final newline after </think>)" if card.startswith(rendered) else ""
    return Finding(
        "server template",
        "FAIL" if probe.template == "server" else "warn",
        f"its --chat-template renders a prompt that differs from the model card's at character {at} of "
        f"{len(card)}{ending}, so template='server' scores other text than the model's",
        f"Restart vLLM with --chat-template {server_template_path()} (qwen-rerank's template; copy the file "
        "to the server), or without --chat-template and use template='client'.",
        data,
    )
