"""The Qwen3-VL-Reranker prompt for one (query, document) pair, as token ids, and its truncation rule.

The official reranker renders this chat with the Qwen3-VL chat template
(``add_generation_prompt=True``) and lets the processor expand each image and
video placeholder::

    <|im_start|>system
    Judge whether the Document meets the requirements based on the Query and the Instruct provided. \
Note that the answer can only be "yes" or "no".<|im_end|>
    <|im_start|>user
    <Instruct>: {instruction}<Query>:{query content}
    <Document>:{document content}<|im_end|>
    <|im_start|>assistant

A content is its videos, then its images, then its texts, with nothing
between them (or the text ``NULL`` when it has none). An image is
``<|vision_start|>`` + ``<|image_pad|>`` x tokens + ``<|vision_end|>``; a video
is, for each pair of frames, ``<{t:.1f} seconds>`` + ``<|vision_start|>`` +
``<|video_pad|>`` x tokens + ``<|vision_end|>``.

The ids are those of tokenizing that whole text, with one difference on
purpose: user text (instruction, query and document texts) is tokenized as
plain characters, so a document holding ``<|im_end|>`` cannot close the
prompt. The text between two control tokens is tokenized as one run, as the
whole-text tokenization does, so any other text gets exactly the official ids.

Truncation is the official rule: all but the last 5 tokens (``<|im_end|>``,
newline, ``<|im_start|>``, ``assistant``, newline) are cut to ``max_length``
by keeping every special token (image and video placeholders included, so no
pixel is lost) and the first non-special tokens that fit. The whole prompt is
then at most ``max_length + 5`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION
from qwen_rerank.prompt import SYSTEM_PROMPT

__all__ = [
    "DEFAULT_VL_INSTRUCTION",
    "DEFAULT_VL_MAX_LENGTH",
    "KEPT_TAIL",
    "ControlIds",
    "Piece",
    "content_pieces",
    "encode_pieces",
    "pair_pieces",
    "token_types",
    "truncate_ids",
]

DEFAULT_VL_MAX_LENGTH = 10240
KEPT_TAIL = 5
NULL_TEXT = "NULL"
_CONTROL_NAMES = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

Piece = str | list[int]
"""Plain text to tokenize, or token ids as they are."""


@dataclass(frozen=True)
class ControlIds:
    """The ids of the control tokens the prompt is built from, and the tokenizer's special ids."""

    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    image_pad: int
    video_pad: int
    special: frozenset[int]

    @classmethod
    def of(cls, tokenizer: Any) -> ControlIds:
        """Read them from a Hugging Face tokenizer of the Qwen3 family."""
        names = _CONTROL_NAMES
        ids = [tokenizer.convert_tokens_to_ids(name) for name in names]
        unknown = getattr(tokenizer, "unk_token_id", None)
        missing = [name for name, i in zip(names, ids, strict=True) if not isinstance(i, int) or i == unknown]
        if missing:
            raise InvalidInputError(
                f"The tokenizer has no {', '.join(missing)} token(s); it is not a Qwen3-VL tokenizer."
            )
        start, end, vision_start, vision_end, image_pad, video_pad = (int(i) for i in ids)
        special = frozenset(int(i) for i in tokenizer.all_special_ids)
        return cls(start, end, vision_start, vision_end, image_pad, video_pad, special)


def content_pieces(
    texts: Sequence[str],
    visuals: Sequence[tuple[str, int, Sequence[float]]],
    control: ControlIds,
) -> list[Piece]:
    """One content's pieces: its visuals in order (videos before images), then its texts.

    Args:
        texts: The content's texts.
        visuals: For each video and then each image: ``(kind, tokens per
            frame pair or per image, frame-pair times)``.
        control: The control ids.
    """
    pieces: list[Piece] = []
    for kind, tokens, stamps in visuals:
        if kind == "video":
            for stamp in stamps:
                pieces.append(f"<{stamp:.1f} seconds>")
                pieces.append([control.vision_start] + [control.video_pad] * tokens + [control.vision_end])
        else:
            pieces.append([control.vision_start] + [control.image_pad] * tokens + [control.vision_end])
    pieces.extend(texts)
    if not texts and not visuals:
        pieces.append(NULL_TEXT)
    return pieces


def pair_pieces(
    instruction: str, query: Sequence[Piece], document: Sequence[Piece], control: ControlIds
) -> list[Piece]:
    """The whole prompt of one pair, from its query's and document's `content_pieces`."""
    return [
        [control.im_start],
        f"system\n{SYSTEM_PROMPT}",
        [control.im_end],
        "\n",
        [control.im_start],
        f"user\n<Instruct>: {instruction}<Query>:",
        *query,
        "\n<Document>:",
        *document,
        [control.im_end],
        "\n",
        [control.im_start],
        "assistant\n",
    ]


def encode_pieces(
    prompts: Sequence[Sequence[Piece]], encode_text: Callable[[list[str]], list[list[int]]]
) -> list[list[int]]:
    """Token ids of each prompt: each run of adjacent text pieces tokenized as one plain text."""
    runs: list[str] = []
    layouts: list[list[int | list[int]]] = []  # an int is the index of a text run in `runs`
    for pieces in prompts:
        layout: list[int | list[int]] = []
        pending: list[str] = []
        for piece in [*pieces, []]:
            if isinstance(piece, str):
                pending.append(piece)
                continue
            if pending:
                layout.append(len(runs))
                runs.append("".join(pending))
                pending = []
            layout.append(piece)
        layouts.append(layout)
    encoded = encode_text(runs) if runs else []
    out: list[list[int]] = []
    for layout in layouts:
        ids: list[int] = []
        for part in layout:
            ids += encoded[part] if isinstance(part, int) else part
        out.append(ids)
    return out


def truncate_ids(ids: list[int], max_length: int, special: frozenset[int]) -> list[int]:
    """The official cut: the head keeps its special tokens and its first non-special ones that fit."""
    head, tail = ids[:-KEPT_TAIL], ids[-KEPT_TAIL:]
    if len(head) <= max_length:
        return ids
    room = max_length - sum(1 for token in head if token in special)
    kept: list[int] = []
    for token in head:
        if token in special:
            kept.append(token)
        elif room > 0:
            kept.append(token)
            room -= 1
    return kept + tail


def token_types(ids: Sequence[int], control: ControlIds) -> list[int]:
    """Each token's modality, as the model's rotary positions read it: 0 text, 1 image, 2 video."""
    return [1 if token == control.image_pad else 2 if token == control.video_pad else 0 for token in ids]
