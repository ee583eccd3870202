"""The Qwen3-Reranker prompt, and the rule for fitting it into ``max_length``.

This module is the only place that spells the template. A pair is scored from::

    PREFIX + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}" + SUFFIX

``PREFIX`` and ``SUFFIX`` carry the chat control tokens and are never cut. The
middle part, the *body*, is what truncation shortens: tokens are dropped from
its end, so the document loses its tail first, and the query only once the
document is gone. That is exactly what the model card's reference code does.

User text (instruction, query, document) is tokenized as plain characters: a
document that contains ``<|im_end|>`` or ``<think>`` gets the tokens of those
characters, never the control tokens, so it cannot close the prompt early.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qwen_rerank.exceptions import InvalidInputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "NO_TOKEN",
    "PREFIX",
    "SUFFIX",
    "SYSTEM_PROMPT",
    "YES_TOKEN",
    "PromptTokenizer",
    "format_body",
    "format_document_part",
    "format_prompt",
    "format_query_part",
    "split_prompt",
    "truncate_body",
]

DEFAULT_MODEL = "Qwen/Qwen3-Reranker-0.6B"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

YES_TOKEN = "yes"
NO_TOKEN = "no"


def format_query_part(query: str, instruction: str) -> str:
    """The part of the body that comes before the document."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n"


def format_document_part(document: str) -> str:
    """The part of the body that holds the document."""
    return f"<Document>: {document}"


def format_body(query: str, document: str, instruction: str) -> str:
    """The text between ``PREFIX`` and ``SUFFIX``: the part that truncation may cut."""
    return format_query_part(query, instruction) + format_document_part(document)


def format_prompt(query: str, document: str, instruction: str) -> str:
    """The whole prompt for one pair, as the model card writes it."""
    return PREFIX + format_body(query, document, instruction) + SUFFIX


def split_prompt(query: str, document: str, instruction: str) -> tuple[str, str]:
    """The prompt cut in two, for servers that score ``query_text + document_text``.

    The first part carries the prefix, the instruction and the query; the second
    the document and the suffix. Their concatenation is :func:`format_prompt`.
    """
    return PREFIX + format_query_part(query, instruction), format_document_part(document) + SUFFIX


def truncate_body(body_ids: Sequence[int], max_length: int, fixed_length: int) -> list[int]:
    """Cut body tokens from the end so that ``fixed_length + len(body) <= max_length``.

    ``fixed_length`` is the token count of ``PREFIX`` plus ``SUFFIX``, which are
    never cut.
    """
    budget = max_length - fixed_length
    if budget < 1:
        raise InvalidInputError(
            f"max_length={max_length} is too small: the fixed prompt alone takes {fixed_length} "
            f"tokens. Use max_length > {fixed_length}."
        )
    return list(body_ids[:budget])


class PromptTokenizer:
    """Turns (query, document) pairs into the token ids the model scores.

    It wraps a Hugging Face tokenizer of the Qwen3 family. The control tokens of
    ``PREFIX`` and ``SUFFIX`` are encoded once; the body is encoded by a copy of
    the tokenizer that knows no added tokens, so user text stays plain text.
    Thread-safe after construction.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.prefix_ids: list[int] = self._encode_control(PREFIX)
        self.suffix_ids: list[int] = self._encode_control(SUFFIX)
        self.yes_id = self._single_token_id(YES_TOKEN)
        self.no_id = self._single_token_id(NO_TOKEN)
        self._plain = _plain_tokenizer(tokenizer)

    @property
    def fixed_length(self) -> int:
        """Tokens of ``PREFIX`` plus ``SUFFIX``: the least any prompt takes."""
        return len(self.prefix_ids) + len(self.suffix_ids)

    def check_max_length(self, max_length: int) -> None:
        """Raise :class:`InvalidInputError` unless ``max_length`` leaves room for a body."""
        truncate_body([], max_length, self.fixed_length)

    def encode_text(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode user text as plain characters, with no control tokens."""
        return [encoding.ids for encoding in self._plain.encode_batch(list(texts), add_special_tokens=False)]

    def encode_pairs(
        self, query: str, documents: Sequence[str], instruction: str, max_length: int
    ) -> list[list[int]]:
        """Full prompt ids, one list per document, each at most ``max_length`` long."""
        bodies = self.encode_text([format_body(query, doc, instruction) for doc in documents])
        return [
            self.prefix_ids + truncate_body(body, max_length, self.fixed_length) + self.suffix_ids
            for body in bodies
        ]

    def _encode_control(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def _single_token_id(self, token: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise InvalidInputError(
                f"The tokenizer does not encode {token!r} as one token (got {ids}); "
                "it is not a Qwen3-Reranker tokenizer."
            )
        return int(ids[0])


def _plain_tokenizer(tokenizer: Any) -> Tokenizer:
    """A copy of ``tokenizer``'s fast backend with every added token removed."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InvalidInputError(
            f"{type(tokenizer).__name__} has no fast (tokenizers) backend; qwen-rerank needs one "
            "to keep control-token strings in user text as plain text."
        )
    spec = json.loads(backend.to_str())
    spec["added_tokens"] = []
    spec["truncation"] = None
    spec["padding"] = None
    return Tokenizer.from_str(json.dumps(spec))
