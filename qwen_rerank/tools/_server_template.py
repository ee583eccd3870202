"""The prompt a vLLM server's ``--chat-template`` renders for a pair, read back from the server.

vLLM renders its scoring template for ``/v1/rerank`` the way ``/tokenize`` renders the same
messages, so `rendered_prompt` asks ``/tokenize`` for the pair's tokens and ``/detokenize``
for their text. Both requests go out through the reranker's own connections, headers and
caps ([`server_post`][qwen_rerank.remote.server_post]).
"""

from __future__ import annotations

from qwen_rerank.remote import RemoteReranker, server_post

__all__ = ["first_difference", "rendered_prompt"]


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
