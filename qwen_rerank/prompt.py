"""The Qwen3-Reranker prompt, and the rule for fitting it into ``max_length``.

This module is the only place that spells the template. A pair is scored from:

<!-- not run by the tests: a template, not a program -->
```python
PREFIX + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}" + SUFFIX
```

``PREFIX`` and ``SUFFIX`` carry the chat control tokens and are never cut. The
middle part, the *body*, is what truncation shortens: tokens are dropped from
its end, so the document loses its tail first, and the query only once the
document is gone. That is exactly what the model card's reference code does.

User text (instruction, query, document) is tokenized as plain characters: a
document that contains ``<|im_end|>`` or ``<think>`` gets the tokens of those
characters, never the control tokens, so it cannot close the prompt early.
A server that tokenizes text itself (vLLM) cannot be told that; for it,
`escape_control_tokens` breaks those spellings before the text is sent.

One more spelling of the prompt ships for servers that build it themselves: the vLLM score
template at [`server_template_path`][qwen_rerank.prompt.server_template_path]. The tests render
it and compare it with `format_prompt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_rerank.exceptions import InvalidInputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "NO_TOKEN",
    "PAD_TOKEN",
    "PREFIX",
    "SUFFIX",
    "SYSTEM_PROMPT",
    "YES_TOKEN",
    "PromptTokenizer",
    "char_boundary",
    "document_start",
    "escape_control_tokens",
    "format_body",
    "format_document_part",
    "format_prompt",
    "format_query_part",
    "server_template_path",
    "split_for_stripping_server",
    "split_prompt",
    "split_prompts",
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

PAD_TOKEN = "<|endoftext|>"
"""Qwen3's padding token: the ``pad_token_id`` of a ``-seq-cls`` conversion."""

YES_TOKEN = "yes"
NO_TOKEN = "no"

# The "<" of every spelling of a Qwen3 added token: <|im_end|>, <|endoftext|>, <|fim_pad|>, ...,
# <think>, </think>, <tool_call>, </tool_call>, <tool_response>, </tool_response>.
_CONTROL_TOKEN_START = re.compile(r"<(?=\|[A-Za-z0-9_]{1,64}\|>|/?(?:think|tool_call|tool_response)>)")
_ZERO_WIDTH_SPACE = "\u200b"


def format_query_part(query: str, instruction: str) -> str:
    """The part of the body that comes before the document."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n"


def format_document_part(document: str) -> str:
    """The part of the body that holds the document."""
    return f"<Document>: {document}"


def format_body(query: str, document: str, instruction: str) -> str:
    """The text between ``PREFIX`` and ``SUFFIX``: the part that truncation may cut."""
    return format_query_part(query, instruction) + format_document_part(document)


def document_start(query: str, instruction: str) -> int:
    """Where the document's first character sits in `format_body`'s text."""
    return len(format_body(query, "", instruction))


def format_prompt(query: str, document: str, instruction: str) -> str:
    """The whole prompt for one pair, as the model card writes it."""
    return PREFIX + format_body(query, document, instruction) + SUFFIX


def split_prompt(query: str, document: str, instruction: str) -> tuple[str, str]:
    """The prompt cut in two, for servers that score ``query_text + document_text``.

    The first part carries the prefix, the instruction and the query; the second
    the document and the suffix. Their concatenation is `format_prompt`.
    """
    return PREFIX + format_query_part(query, instruction), format_document_part(document) + SUFFIX


def split_prompts(query: str, documents: Sequence[str], instruction: str) -> tuple[str, list[str]]:
    """`split_prompt` for many documents: the shared query text and one text per document."""
    query_text = PREFIX + format_query_part(query, instruction)
    return query_text, [format_document_part(doc) + SUFFIX for doc in documents]


def split_for_stripping_server(query_text: str, texts: Sequence[str]) -> tuple[str, list[str]]:
    """A split prompt moved so that a server that strips both texts of a pair scores it unchanged.

    Infinity (through sentence-transformers' ``CrossEncoder``) calls ``.strip()``
    on the query text and on each document text before tokenizing them as a
    pair. That would drop the newline that ends the query part and the two
    newlines that end ``SUFFIX``, whose last token is the one scored. So:

    - the cut moves from before ``<Document>`` to inside it: the query text ends
      in ``<Document`` and each text starts with ``>: ``. Qwen's pre-tokenizer
      splits there in the whole prompt too (``<Document`` is a word, ``>:`` a
      run of punctuation), so the pair tokenizes exactly as the whole prompt;
    - each text ends with [`PAD_TOKEN`][qwen_rerank.prompt.PAD_TOKEN], which a sequence-classification
      head skips: it scores the last token that is not padding, the suffix's
      final newlines.

    When truncation left no document text (every text is ``SUFFIX``), the whole
    prompt after its first control token goes in each text instead.

    Args:
        query_text: The first text of [`split_prompts`][qwen_rerank.prompt.split_prompts] or
            [`PromptTokenizer.split_pairs`][qwen_rerank.prompt.PromptTokenizer.split_pairs].
        texts: The document texts of the same split.

    Returns:
        The query text and document texts to send.
    """
    label = format_document_part("")[: -len(">: ")]
    if all(text.startswith(label) for text in texts):
        return query_text + label, [text[len(label) :] + PAD_TOKEN for text in texts]
    head = PREFIX[: PREFIX.index(">") + 1]  # "<|im_start|>"
    return head, [query_text[len(head) :] + text + PAD_TOKEN for text in texts]


def server_template_path() -> Path:
    """The vLLM score template that renders exactly the model card's prompt (a file in this package).

    Start vLLM with `--chat-template` set to this file (copy it to the server's machine) and use
    `VLLMReranker(url, template="server")`. The template vLLM ships
    (`examples/pooling/score/template/qwen3_reranker.jinja`) loses the prompt's final newline when
    vLLM renders it, so every pair is scored one token short and the scores are wrong; this one
    keeps it.

    Example:
        ```bash
        vllm serve Qwen/Qwen3-Reranker-0.6B --runner pooling --hf-overrides '...' \\
            --chat-template "$(python -c 'import qwen_rerank.prompt as p; print(p.server_template_path())')"
        ```
    """
    return Path(__file__).with_name("qwen3_reranker_vllm.jinja")


def escape_control_tokens(text: str) -> str:
    """``text`` with each control-token spelling broken by a zero-width space after its ``<``.

    For servers that tokenize text with the full tokenizer, as vLLM does: there a
    document containing ``<|im_end|>`` would get the real control token and could
    close the prompt. After escaping, ``<\u200b|im_end|>`` reads the same to a
    person but is plain text to the tokenizer. Text without such spellings is
    returned unchanged (the same object).
    """
    if "<" not in text:  # the common case, and a much faster scan than the regex
        return text
    return _CONTROL_TOKEN_START.sub("<" + _ZERO_WIDTH_SPACE, text)


def truncate_body(
    body_ids: Sequence[int],
    max_length: int,
    fixed_length: int,
    offsets: Sequence[tuple[int, int]] | None = None,
) -> list[int]:
    """Cut body tokens from the end so that ``fixed_length + len(body) <= max_length``.

    ``fixed_length`` is the token count of ``PREFIX`` plus ``SUFFIX``, which are
    never cut. With the tokens' character ``offsets``, the cut also drops a
    character that the budget would split (see [`char_boundary`][qwen_rerank.prompt.char_boundary]).
    """
    budget = max_length - fixed_length
    if budget < 1:
        raise InvalidInputError(
            f"max_length={max_length} is too small: the fixed prompt alone takes {fixed_length} "
            f"tokens. Use max_length > {fixed_length}."
        )
    keep = budget if offsets is None else char_boundary(offsets, budget)
    return list(body_ids[:keep])


def char_boundary(offsets: Sequence[tuple[int, int]], keep: int) -> int:
    """The most leading tokens, at most ``keep``, that end on a character boundary.

    The byte-level tokenizer may spell one character (a CJK character, an
    emoji) with several tokens; they all carry that character's offsets. A cut
    between two of them would keep part of a character, which no text can
    hold: a server given the cut text sees one token fewer. So every cut, local
    or remote, drops the whole split character instead.

    Args:
        offsets: Each token's ``(start, end)`` character offsets in its text.
        keep: The most tokens the budget allows.

    Returns:
        ``keep``, lowered while the token after the cut starts before the last
        kept token ends.
    """
    keep = min(keep, len(offsets))
    while 0 < keep < len(offsets) and offsets[keep][0] < offsets[keep - 1][1]:
        keep -= 1
    return keep


class PromptTokenizer:
    """Turns (query, document) pairs into the token ids the model scores.

    It wraps a Hugging Face tokenizer of the Qwen3 family. The control tokens of
    ``PREFIX`` and ``SUFFIX`` are encoded once; the body is encoded by a copy of
    the tokenizer that knows no added tokens, so user text stays plain text.
    Thread-safe after construction.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        if isinstance(tokenizer, (str, os.PathLike)):
            self._plain, control = _from_file(Path(tokenizer))
        else:
            backend = _backend(tokenizer)
            self._plain, control = _plain_tokenizer(backend), _ControlEncoder(backend)
        self.prefix_ids: list[int] = control.encode(PREFIX)
        self.suffix_ids: list[int] = control.encode(SUFFIX)
        self.yes_id = _single_token_id(control, YES_TOKEN)
        self.no_id = _single_token_id(control, NO_TOKEN)
        pad_id, pad_ids = getattr(tokenizer, "pad_token_id", None), control.encode(PAD_TOKEN)
        if not isinstance(pad_id, int):
            pad_id = pad_ids[0] if len(pad_ids) == 1 else self.suffix_ids[-1]
        self.pad_id: int = pad_id
        """A token id to fill masked (padding) positions with; any valid id scores the same."""

    @property
    def fixed_length(self) -> int:
        """Tokens of ``PREFIX`` plus ``SUFFIX``: the least any prompt takes."""
        return len(self.prefix_ids) + len(self.suffix_ids)

    def check_max_length(self, max_length: int) -> None:
        """Raise `InvalidInputError` unless ``max_length`` leaves room for a body."""
        truncate_body([], max_length, self.fixed_length)

    def encode_text(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode user text as plain characters, with no control tokens."""
        return [encoding.ids for encoding in self._plain.encode_batch(list(texts), add_special_tokens=False)]

    def body_budget(self, max_length: int) -> int:
        """Most body tokens a prompt of ``max_length`` holds; raises if there is no room."""
        self.check_max_length(max_length)
        return max_length - self.fixed_length

    def encode_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """`encode_text` with each token's ``(start, end)`` character offsets in its text."""
        encodings = self._plain.encode_batch(list(texts), add_special_tokens=False)
        return [(encoding.ids, encoding.offsets) for encoding in encodings]

    def encode_pairs(
        self, query: str, documents: Sequence[str], instruction: str, max_length: int
    ) -> list[list[int]]:
        """Full prompt ids, one list per document, each at most ``max_length`` long.

        A body longer than the budget is cut by [`truncate_body`][qwen_rerank.prompt.truncate_body],
        on a character boundary, exactly as [`split_pairs`][qwen_rerank.prompt.PromptTokenizer.split_pairs]
        cuts the text a server receives.
        """
        budget = self.body_budget(max_length)
        bodies = self._plain.encode_batch(
            [format_body(query, doc, instruction) for doc in documents], add_special_tokens=False
        )
        return [
            self.prefix_ids
            + truncate_body(
                body.ids, max_length, self.fixed_length, body.offsets if len(body.ids) > budget else None
            )
            + self.suffix_ids
            for body in bodies
        ]

    def split_pairs(
        self, query: str, documents: Sequence[str], instruction: str, max_length: int
    ) -> tuple[str, list[str]]:
        """`split_prompt` for every document, truncated like `encode_pairs`.

        Returns the query text and one document text per document such that
        ``query_text + document_text`` tokenizes to at most ``max_length`` tokens,
        cut by the body rule: the document loses its tail first, and the query is
        cut (identically for every document) only when no document token fits.
        Each cut falls on a token boundary of the plain text.
        """
        self.check_max_length(max_length)
        budget = max_length - self.fixed_length
        query_part = format_query_part(query, instruction)
        document_budget = budget - len(self.encode_text([query_part])[0])
        if document_budget < 1:
            return PREFIX + self._cut([query_part], budget)[0], [SUFFIX] * len(documents)
        parts = self._cut([format_document_part(doc) for doc in documents], document_budget)
        return PREFIX + query_part, [part + SUFFIX for part in parts]

    def truncate_documents(
        self, query: str, documents: Sequence[str], instruction: str, max_length: int
    ) -> list[str]:
        """Documents cut from their end so that `format_prompt` fits in ``max_length`` tokens.

        For servers that build the prompt themselves from the raw query and
        document. Raises `InvalidInputError` when the instruction and query
        leave no room for any document text.
        """
        self.check_max_length(max_length)
        query_part = format_query_part(query, instruction)
        label = format_document_part("")
        budget = max_length - self.fixed_length - len(self.encode_text([query_part])[0])
        if budget <= len(self.encode_text([label])[0]):
            raise InvalidInputError(
                f"The instruction and query take {max_length - self.fixed_length - budget} of the "
                f"{max_length - self.fixed_length} tokens that max_length={max_length} leaves for them "
                "and the document, so no document text fits. Shorten the query or raise max_length."
            )
        parts = self._cut([format_document_part(doc) for doc in documents], budget)
        return [part[len(label) :] for part in parts]

    def _cut(self, texts: Sequence[str], budget: int) -> list[str]:
        """Each text cut at a token boundary so that it encodes to at most ``budget`` plain tokens.

        The cut never splits a character (see [`char_boundary`][qwen_rerank.prompt.char_boundary]),
        so it keeps the tokens [`encode_pairs`][qwen_rerank.prompt.PromptTokenizer.encode_pairs] keeps.
        """
        out = list(texts)
        # A token is at least one byte, so a text of no more bytes than the budget fits as it is.
        long = [i for i, text in enumerate(texts) if len(text.encode("utf-8")) > budget]
        encodings = self._plain.encode_batch([texts[i] for i in long], add_special_tokens=False)
        for i, encoding in zip(long, encodings, strict=True):
            keep = char_boundary(encoding.offsets, budget)
            if keep == len(encoding.ids):
                continue
            # Re-encoding a cut word can take more tokens than it had inside the whole text.
            while keep > 0:
                cut = texts[i][: encoding.offsets[keep - 1][1]]
                if len(self._plain.encode(cut, add_special_tokens=False).ids) <= budget:
                    break
                keep = char_boundary(encoding.offsets, keep - 1)
            out[i] = cut if keep > 0 else ""
        return out

    def encode_head(self, query: str, instruction: str) -> list[int]:
        """The tokens that every prompt for ``query`` starts with: ``PREFIX``, instruction and query.

        The body is cut right after the newline that ends the query part. Qwen's
        pre-tokenizer never merges that newline with the ``<`` of ``<Document>``
        that follows it (a query ending in ``"?"`` gives the single token
        ``"?\\n"`` in both encodings), so each prompt of `encode_pairs`
        begins with exactly these ids, unless truncation cut into the query.
        Callers that reuse a computed head must still check each prompt.
        """
        return self.prefix_ids + self.encode_text([format_query_part(query, instruction)])[0]


def _single_token_id(control: _ControlEncoder, token: str) -> int:
    ids = control.encode(token)
    if len(ids) != 1:
        raise InvalidInputError(
            f"The tokenizer does not encode {token!r} as one token (got {ids}); "
            "it is not a Qwen3-Reranker tokenizer."
        )
    return int(ids[0])


class _ControlEncoder:
    """Encodes text in which control-token spellings are control tokens (the prompt's fixed parts).

    With the full tokenizer it simply encodes. With only the plain copy, it
    does what the full tokenizer does: the text is split at each added token's
    spelling, which becomes that token's id, and the text between is encoded
    as plain text.
    """

    def __init__(self, tokenizer: Tokenizer, added: dict[str, int] | None = None) -> None:
        self._tokenizer = tokenizer
        self._added = added
        spellings = sorted(added or {}, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, spellings)) + ")") if spellings else None

    def encode(self, text: str) -> list[int]:
        if self._split is None or self._added is None:
            return list(self._tokenizer.encode(text, add_special_tokens=False).ids)
        ids: list[int] = []
        for k, piece in enumerate(self._split.split(text)):
            if k % 2:
                ids.append(self._added[piece])
            elif piece:
                ids += self._tokenizer.encode(piece, add_special_tokens=False).ids
        return ids


def _backend(tokenizer: Any) -> Tokenizer:
    """The fast (``tokenizers``) tokenizer behind ``tokenizer``, or ``tokenizer`` itself if it is one."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise InvalidInputError(
            f"{type(tokenizer).__name__} has no fast (tokenizers) backend; qwen-rerank needs one "
            "to keep control-token strings in user text as plain text."
        )
    return backend


def _plain_tokenizer(backend: Tokenizer) -> Tokenizer:
    """A copy of ``backend`` with every added token removed (see `_plain_from_spec`)."""
    return _plain_from_spec(backend.to_str())


def _from_file(path: Path) -> tuple[Tokenizer, _ControlEncoder]:
    """The plain tokenizer of a ``tokenizer.json`` and an encoder of control text, building one tokenizer.

    Building a tokenizer of Qwen's vocabulary takes about as long as loading
    the model, so only the plain copy is built; the control tokens are taken
    from the file's ``added_tokens`` list. Added tokens that strip spaces
    around them, or match within normalized text, are left to the full
    tokenizer, which is then built too.
    """
    from tokenizers import Tokenizer

    try:
        spec = path.read_text(encoding="utf-8")
        added, _ = _added_tokens(spec)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"Cannot read the tokenizer file {str(path)!r}: {exc}.") from exc
    flags = ("lstrip", "rstrip", "single_word", "normalized")
    if any(token.get(flag) for token in added for flag in flags):
        backend = Tokenizer.from_str(spec)
        return _plain_tokenizer(backend), _ControlEncoder(backend)
    plain = _plain_from_spec(spec)
    return plain, _ControlEncoder(plain, {token["content"]: int(token["id"]) for token in added})


_PLAIN_COPIES: dict[str, Tokenizer] = {}
_PLAIN_COPIES_LOCK = threading.Lock()


def _plain_from_spec(spec: str) -> Tokenizer:
    """The tokenizer of JSON ``spec`` without its added tokens, built once per spec in this process.

    Only the ``added_tokens`` list is cut out of the text (parsing all of
    Qwen's 11 MB spelling in Python took seconds). Copies are kept by a digest
    of ``spec``, so each later [`PromptTokenizer`][qwen_rerank.prompt.PromptTokenizer]
    of the same tokenizer reuses one (a ``tokenizers.Tokenizer`` is thread-safe).
    """
    from tokenizers import Tokenizer

    key = hashlib.sha256(spec.encode("utf-8")).hexdigest()
    with _PLAIN_COPIES_LOCK:
        plain = _PLAIN_COPIES.get(key)
    if plain is None:
        _, (start, end) = _added_tokens(spec)
        plain = Tokenizer.from_str(spec[:start] + "[]" + spec[end:])
        plain.no_truncation()
        plain.no_padding()
        with _PLAIN_COPIES_LOCK:
            plain = _PLAIN_COPIES.setdefault(key, plain)
    return plain


def _added_tokens(spec: str) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """A tokenizer JSON's ``added_tokens`` list, and where that list's text starts and ends in ``spec``."""
    match = re.search(r'"added_tokens"\s*:\s*', spec)
    if match is None:
        return [], (len(spec), len(spec))
    added, end = json.JSONDecoder().raw_decode(spec, match.end())
    return list(added), (match.end(), end)
