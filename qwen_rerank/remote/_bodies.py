"""What is sent: the sub-requests of a call, their JSON bodies, and their scores merged back.

- [`RequestBuilder`][qwen_rerank.remote._bodies.RequestBuilder]: a request (query,
  documents, instruction) as sub-requests of at most ``max_documents_per_request``
  documents, in the prompt the template asks for, truncated when a tokenizer is given.
- [`Batch`][qwen_rerank.remote._bodies.Batch]: the sub-requests of many requests, and
  their scores as they come back, merged per request in document order.

All of it is pure: no I/O, the same for sync and async calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from qwen_rerank._chunking import WindowPlan
from qwen_rerank._imports import require
from qwen_rerank._requests import Progress, Request
from qwen_rerank._warnings import warn
from qwen_rerank.exceptions import InvalidInputError, ModelLoadError
from qwen_rerank.media import Content, MediaLimits
from qwen_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    SUFFIX,
    PromptTokenizer,
    escape_control_tokens,
    format_body,
    format_document_part,
    split_for_stripping_server,
    split_prompts,
)
from qwen_rerank.remote._dialects import Dialect, break_placeholders, encode_body
from qwen_rerank.remote._elements import Element, check_text_tokens, document_element, query_element
from qwen_rerank.remote._parts import content_parts
from qwen_rerank.remote._providers import HostedMedia
from qwen_rerank.remote._settings import Limits, check_fixed_instruction
from qwen_rerank.remote._splitting import RequestLimits, count_tokens, split_request

__all__ = [
    "Batch",
    "RequestBuilder",
    "SubRequest",
    "chunk_bounds",
    "escaped_windows",
    "load_tokenizer",
    "verifies_server_template",
    "warn_server_template",
]

logger = logging.getLogger("qwen_rerank.remote._reranker")


@dataclass(frozen=True)
class SubRequest:
    """Documents ``[start, end)`` of one request, as the JSON body that carries them."""

    start: int
    end: int
    body: bytes
    prompt_tokens: int | None = None  # the tokens the server's prompts must take; None: not known


def chunk_bounds(count: int, max_per_chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``count`` items in the fewest chunks, of near-equal sizes."""
    chunks = -(-count // max_per_chunk)
    size, extra = divmod(count, chunks)
    bounds, start = [], 0
    for k in range(chunks):
        end = start + size + (1 if k < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def load_tokenizer(name: Any, max_length: int) -> PromptTokenizer:
    """The prompt tokenizer of a hub id or local folder, loaded with transformers, for ``max_length``."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"tokenizer must be a hub id or a local folder, got {name!r}.")
    transformers = require("transformers", "local")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load tokenizer {name!r}: {exc}. Pass the model's hub id or a local folder "
            "holding its tokenizer files."
        ) from exc
    prompt_tokenizer = PromptTokenizer(tokenizer)
    prompt_tokenizer.check_max_length(max_length)
    return prompt_tokenizer


@dataclass
class RequestBuilder:
    """How one request becomes sub-request bodies, under the reranker's settings."""

    dialect: Dialect
    template: str
    model: str | None
    limits: Limits
    tokenizer: PromptTokenizer | None
    budget: RequestLimits | None = None  # a hosted API's limits: requests are split to them
    media_limits: MediaLimits | None = None
    """How local images are read to be sent; ``None``: the server reads text only."""
    elements: HostedMedia | None = None
    """A hosted multimodal model's media limits: every item goes in its element form."""
    warned_long: bool = False

    def sub_requests(self, query: Content, documents: list[Content], instruction: str) -> list[SubRequest]:
        """The bodies to send for ``documents``, in document order."""
        if self.elements is not None:
            return self._element_sub_requests(query, documents, instruction, self.elements)
        plain = [doc for doc in documents if isinstance(doc, str)]
        if not isinstance(query, str) or len(plain) != len(documents):
            return self._media_sub_requests(query, documents, instruction)
        query_text, texts, sent_instruction = self._texts(query, plain, instruction)
        counts = self._prompt_counts(query_text, texts, sent_instruction)
        bounds = self._bounds(query_text, texts, sent_instruction)
        return [
            SubRequest(
                start,
                end,
                self._encode(query_text, texts[start:end], sent_instruction),
                None if counts is None else sum(counts[start:end]),
            )
            for start, end in bounds
        ]

    def _media_sub_requests(
        self, query: Content, documents: list[Content], instruction: str
    ) -> list[SubRequest]:
        """Bodies whose multimodal items are content parts (see `content_parts`); the server's
        template and truncation apply."""
        limits = self.media_limits
        if limits is None:
            raise InvalidInputError("This reranker was not built with multimodal=True.")
        check_fixed_instruction(self.dialect, instruction)
        query_part = content_parts(query, limits, "query")
        parts = [content_parts(doc, limits, f"documents[{k}]") for k, doc in enumerate(documents)]
        sent_instruction = self._server_instruction(escape_control_tokens(instruction))
        return [
            SubRequest(start, end, self._encode(query_part, parts[start:end], sent_instruction))
            for start, end in chunk_bounds(len(parts), self.limits.max_documents_per_request)
        ]

    def _element_sub_requests(
        self, query: Content, documents: list[Content], instruction: str, media: HostedMedia
    ) -> list[SubRequest]:
        """A hosted multimodal model's bodies (see `_elements`), split to its limits.

        Text alone is sent as text is to any hosted API (cut with ``tokenizer=``); each
        request keeps within the documents, image documents, video documents and text
        tokens one request may hold. Images and videos have no token count here. A query's
        image or video is scored with every document, so it counts as one in each.
        """
        limits, budget = self.media_limits or MediaLimits(), self.budget
        all_text = isinstance(query, str) and all(isinstance(doc, str) for doc in documents)
        if all_text:
            query_text, texts, sent = self._texts(cast(str, query), cast(list[str], documents), instruction)
            first = Element(query_text, query_text)
            items = [Element({"text": text}, text) for text in texts]  # escaped (and cut) by _texts
        else:
            sent = self._server_instruction(escape_control_tokens(instruction))
            first = query_element(query, media, limits)
            items = [
                document_element(doc, media, limits, f"documents[{k}]") for k, doc in enumerate(documents)
            ]
        head = [first.text] if sent is None else [first.text, sent]
        counts = count_tokens([*head, *(item.text for item in items)], self.tokenizer)
        if not all_text and budget is not None:
            cap = budget.max_tokens_per_item
            check_text_tokens(counts[len(head) :], cap, estimated=self.tokenizer is None)
        bounds = (
            chunk_bounds(len(items), self.limits.max_documents_per_request)
            if budget is None
            else split_request(
                sum(counts[: len(head)]),
                counts[len(head) :],
                budget,
                estimated=self.tokenizer is None,
                images=[item.image or first.image for item in items],
                videos=[item.video or first.video for item in items],
            )
        )
        return [
            SubRequest(
                start,
                end,
                self._encode(
                    first.value,
                    [item.value for item in items[start:end]],
                    sent,
                    fps=media.fps if first.video or any(item.video for item in items[start:end]) else None,
                ),
            )
            for start, end in bounds
        ]

    def _encode(
        self,
        query: str | dict[str, Any],
        documents: Sequence[str | dict[str, Any]],
        instruction: str | None,
        fps: float | None = None,
    ) -> bytes:
        """One request body in this builder's dialect, for its model and ``max_tokens_per_doc``."""
        return encode_body(
            self.dialect,
            query,
            documents,
            self.model,
            instruction=instruction,
            max_tokens_per_doc=self.limits.max_tokens_per_doc,
            fps=fps,
        )

    def check_instruction(self, instruction: str) -> None:
        """Refuse an instruction that this dialect and template cannot send, before anything is sent.

        Raises:
            InvalidInputError: llama-server's fixed instruction is not ``instruction``, or
                ``template="server"`` has no field to send it in.
        """
        check_fixed_instruction(self.dialect, instruction)
        if self.template == "server":
            self._server_instruction(escape_control_tokens(instruction))

    def _prompt_counts(self, query: str, texts: list[str], instruction: str | None) -> list[int] | None:
        """The tokens of the model card's prompt of each pair the server's template renders.

        Only where `verifies_server_template` holds; the texts are escaped, so the plain
        encoding is the server's.
        """
        pt = self.tokenizer
        if pt is None or not verifies_server_template(self.dialect, self.template, self.limits):
            return None
        instruction = instruction or DEFAULT_INSTRUCTION
        bodies = pt.encode_text([format_body(query, text, instruction) for text in texts])
        return [pt.fixed_length + len(body) for body in bodies]

    def _bounds(self, query: str, texts: list[str], instruction: str | None) -> list[tuple[int, int]]:
        """Sub-request ranges: by document count, or within a hosted API's limits (tokens counted)."""
        if self.budget is None:
            return chunk_bounds(len(texts), self.limits.max_documents_per_request)
        # The provider reads the query (and the instruction beside it) once per document.
        query_texts = [query] if instruction is None else [query, instruction]
        counts = count_tokens([*query_texts, *texts], self.tokenizer)
        head = len(query_texts)
        return split_request(sum(counts[:head]), counts[head:], self.budget, estimated=self.tokenizer is None)

    def _texts(self, query: str, documents: list[str], instruction: str) -> tuple[str, list[str], str | None]:
        """The query and document texts to send, and the instruction field (server template only)."""
        check_fixed_instruction(self.dialect, instruction)
        query, instruction = escape_control_tokens(query), escape_control_tokens(instruction)
        query = break_placeholders(self.dialect, query)
        documents = [escape_control_tokens(doc) for doc in documents]
        pt = self.tokenizer
        if self.template == "client":
            if pt is not None:
                query_text, texts = pt.split_pairs(query, documents, instruction, self.limits.max_length)
            else:
                query_text, texts = split_prompts(query, documents, instruction)
                self._warn_if_long(query_text, texts)
            if self.dialect.strips_texts:
                query_text, texts = split_for_stripping_server(query_text, texts)
            return query_text, texts, None
        texts = (
            pt.truncate_documents(query, documents, instruction, self.limits.max_length) if pt else documents
        )
        return query, texts, self._server_instruction(instruction)

    def cut(self, query: str, documents: list[str], instruction: str) -> list[str]:
        """``documents`` (already escaped) as much of each as the request bodies will carry."""
        pt = self.tokenizer
        if pt is None:
            return documents
        if self.template == "server":
            return pt.truncate_documents(query, documents, instruction, self.limits.max_length)
        _, parts = pt.split_pairs(query, documents, instruction, self.limits.max_length)
        label = len(format_document_part(""))
        return [part.removesuffix(SUFFIX)[label:] for part in parts]

    def _server_instruction(self, instruction: str) -> str | None:
        if self.dialect.instruction_field is not None:
            return instruction
        if instruction != DEFAULT_INSTRUCTION and self.dialect.fixed_instruction is None:
            raise InvalidInputError(
                f"api={self.dialect.name!r} has no instruction field, so template='server' can only use "
                "the server's default instruction. Use template='client' to send this instruction."
            )
        return None

    def _warn_if_long(self, query_text: str, texts: list[str]) -> None:
        if self.warned_long:
            return
        limit = self.limits.max_length - len(query_text.encode("utf-8"))
        # A token is at least one byte: a text of no more bytes than the limit surely fits.
        if any(len(t) * 4 > limit and len(t.encode("utf-8")) > limit for t in texts):
            self.warned_long = True
            logger.warning(
                "A document may exceed max_length=%d tokens. Without tokenizer= it is sent whole: the "
                "server scores all of it, or rejects it (HTTP 400) if it is longer than its "
                "--max-model-len. Pass tokenizer= to truncate on the client like LocalReranker.",
                self.limits.max_length,
            )


def verifies_server_template(dialect: Dialect, template: str, limits: Limits) -> bool:
    """Whether the prompt tokens vLLM reports are checked against the model card's prompts.

    With vLLM's server template and no ``max_tokens_per_doc`` (which vLLM applies, so that
    the client cannot count the prompt), each reply's ``usage.prompt_tokens`` must equal the
    tokens of the card's prompts: a template that renders another prompt scores other text.
    """
    return dialect.name == "vllm" and template == "server" and limits.max_tokens_per_doc is None


def warn_server_template(dialect: Dialect) -> None:
    """Warn, for vLLM, that the client cannot see which prompt the server's template renders."""
    if dialect.name != "vllm":
        return
    warn(
        "template='server' scores whatever prompt the server's --chat-template renders, which the client "
        "cannot see: vLLM's own qwen3_reranker.jinja loses the prompt's final newline and scores wrong "
        "without an error. Start vLLM with --chat-template set to the file that "
        "qwen_rerank.prompt.server_template_path() names, and run `qwen-rerank check --base-url URL "
        "--template server` once: it reads back the rendered prompt. (With tokenizer=, each reply's "
        "prompt token count is checked too, which catches templates of another length.)",
    )


class Batch:
    """The sub-requests of many requests, and their scores as they come back, merged per request."""

    def __init__(
        self, builder: RequestBuilder, requests: list[Request], instruction: str, progress: Progress | None
    ) -> None:
        self._counts = [len(documents) for _, documents in requests]
        self._subs = [builder.sub_requests(q, documents, instruction) for q, documents in requests]
        self._parts: list[list[list[float] | None]] = [[None] * len(subs) for subs in self._subs]
        self._left = [len(subs) for subs in self._subs]
        self._progress = progress

    def pending(self) -> list[tuple[tuple[int, int], SubRequest]]:
        """Every sub-request with its key ``(request, part)``, in request order."""
        return [((r, k), sub) for r, subs in enumerate(self._subs) for k, sub in enumerate(subs)]

    def done(self, key: tuple[int, int], scores: list[float]) -> None:
        """Keep the scores of sub-request ``key``, and report progress."""
        request, part = key
        self._parts[request][part] = scores
        self._left[request] -= 1
        if self._progress is not None:
            self._progress(1 if self._left[request] == 0 else 0, len(scores))

    def results(self) -> list[list[float]]:
        """Every request's scores, in document order."""
        return [
            merge(count, subs, [p for p in parts if p is not None])
            for count, subs, parts in zip(self._counts, self._subs, self._parts, strict=True)
        ]


def merge(count: int, subs: Sequence[SubRequest], parts: Sequence[list[float]]) -> list[float]:
    """The scores of ``count`` documents from the scores of their sub-requests."""
    scores = [0.0] * count
    for sub, part in zip(subs, parts, strict=True):
        scores[sub.start : sub.end] = part
    return scores


def escaped_windows(
    plan_windows: Callable[[str, list[str], str], WindowPlan | None],
    builder: RequestBuilder,
    query: str,
    documents: list[str],
    instruction: str,
) -> WindowPlan | None:
    """Chunk mode's windows as they are sent (control tokens escaped, cut to fit), spans in the original.

    Escaping makes a text longer, and a window tokenized on its own may take a token more
    than inside its document: windows cut from the original would be cut again on the way
    out, and their spans would claim text that was never scored. Here the windows are cut
    from the escaped text, by the rule the request bodies use, and each span is mapped
    back to the original characters that were sent.
    """
    escaped = [escape_control_tokens(doc) for doc in documents]
    query, instruction = escape_control_tokens(query), escape_control_tokens(instruction)
    plan = plan_windows(query, escaped, instruction)
    if plan is None:
        return None
    texts = builder.cut(query, plan.texts, instruction)
    maps: dict[int, list[int]] = {}
    spans: list[tuple[int, int] | None] = []
    for owner, span, text in zip(plan.owners, plan.spans, texts, strict=True):
        if span is None:
            spans.append(None)
            continue
        if owner not in maps:
            maps[owner] = _original_offsets(documents[owner], escaped[owner])
        spans.append((maps[owner][span[0]], maps[owner][span[0] + len(text)]))
    return WindowPlan(plan.count, texts, plan.owners, spans, plan.truncated)


def _original_offsets(original: str, escaped: str) -> list[int]:
    """For each offset of ``escaped`` (which only inserts characters), the offset in ``original``."""
    offsets, j = [], 0
    for char in escaped:
        offsets.append(j)
        if j < len(original) and char == original[j]:
            j += 1
    offsets.append(j)
    return offsets
