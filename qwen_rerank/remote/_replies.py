"""What comes back: a response body read under a size cap, and turned into scores or an error.

- [`BodyReader`][qwen_rerank.remote._replies.BodyReader] and `reply_limit`: a body read
  under a size cap, decoding gzip or deflate itself.
- [`parse_scores`][qwen_rerank.remote._replies.parse_scores]: a 200 response checked and
  mapped back by ``index``.
- [`status_error`][qwen_rerank.remote._replies.status_error]: an error status turned into
  [`APIStatusError`][qwen_rerank.APIStatusError].
- `parse_retry_after`: the wait a ``Retry-After`` header asks for.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import APIStatusError, MalformedResponseError
from qwen_rerank.remote._dialects import DIALECTS, Dialect, Usage, read_usage, results_of
from qwen_rerank.remote._hosted import hosted_error_text, hosted_results_shape
from qwen_rerank.remote._providers import Provider

__all__ = [
    "MAX_SERVER_TEXT",
    "BodyReader",
    "Parsed",
    "check_prompt_tokens",
    "parse_retry_after",
    "parse_scores",
    "quotable",
    "reply_limit",
    "server_message",
    "status_error",
]

# The most characters of anything a server said that reach a message.
MAX_SERVER_TEXT = 500


def reply_limit(body: bytes, documents: int) -> int:
    """The most bytes a legitimate reply to this request body can take.

    A server may echo every document, JSON-escaped (at most 3x the UTF-8 we sent),
    plus an id, an index, a score and metadata per result.
    """
    return 3 * len(body) + 2048 * documents + 65536


class BodyReader:
    """Collects a response body, decoding gzip or deflate itself, and stops past ``limit`` bytes.

    ``limit`` counts decoded bytes (and raw ones, for an unencoded body); a
    compressed body that would inflate past it is refused without inflating
    the rest, so a small "gzip bomb" costs at most ``limit`` bytes of memory.
    """

    def __init__(self, limit: int, content_encoding: str | None, url: str) -> None:
        self.limit, self.url, self.received = limit, url, 0
        self._parts: list[bytes] = []
        self._size = 0
        encoding = (content_encoding or "identity").strip().lower()
        if encoding in ("identity", ""):
            self._inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        else:
            raise MalformedResponseError(
                f"The server at {display_url(url)} sent a body in Content-Encoding {encoding!r}, which "
                "was not asked for (the client accepts gzip and deflate)."
            )

    @classmethod
    def for_reply_to(
        cls, body: bytes, documents: int, limit: int | None, content_encoding: str | None, url: str
    ) -> BodyReader:
        """The reader of the reply to ``body`` (``documents`` documents): ``limit``, or else `reply_limit`."""
        return cls(limit or reply_limit(body, documents), content_encoding, url)

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self._inflater is None:
            self._keep(chunk)
            return
        try:
            data = chunk
            while data:
                out = self._inflater.decompress(data, self.limit - self._size + 1)
                self._keep(out)
                data = self._inflater.unconsumed_tail
        except zlib.error as exc:
            raise MalformedResponseError(
                f"The server at {display_url(self.url)} sent a compressed body that does not decode: {exc}."
            ) from exc

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise MalformedResponseError(
                f"The server at {display_url(self.url)} sent a response larger than {self.limit:,} bytes "
                "(decoded), more than any valid rerank reply to this request; reading stopped there. "
                "Raise max_response_bytes= if the server is trusted and adds large metadata."
            )
        if data:
            self._parts.append(data)

    def content(self) -> bytes:
        if self._inflater is not None:
            self._keep(self._inflater.flush())
        return b"".join(self._parts)


@dataclass(frozen=True)
class Parsed:
    """One sub-request's scores in document order, and the usage its server reported."""

    scores: list[float]
    usage: Usage


def parse_scores(
    content: bytes,
    expected: int,
    url: str,
    *,
    dialect: Dialect = DIALECTS["vllm"],
    redact: Callable[[str], str] = str,
    prompt_tokens: int | None = None,
) -> Parsed:
    """Scores of a 200 rerank response, in document order, mapped by each result's ``index``.

    Echoed documents are ignored. Raises
    [`MalformedResponseError`][qwen_rerank.MalformedResponseError] unless the body is
    JSON with a list of results (where ``dialect`` keeps it) holding
    exactly one finite score in [0, 1] for every index in ``range(expected)``.
    ``redact`` scrubs secrets from the quoted body. With ``prompt_tokens``, the tokens
    the model card's prompts take, a server that reports another count raises too (see
    `check_prompt_tokens`).
    """
    where = f"The server at {display_url(url)} answered HTTP 200"
    data = _load_json(content, where, redact, expected)
    results = results_of(dialect, data)
    if results is None:
        shape = "a bare list of results" if dialect.results_key is None else f"a {dialect.results_key!r} list"
        shape = shape if dialect.hosted is None else hosted_results_shape(dialect.hosted)
        raise MalformedResponseError(
            f"{where} without {shape}: {redact(_snippet(content))!r}. Is this a rerank endpoint, "
            f"and does it speak api={dialect.name!r}?"
        )
    scores: list[float | None] = [None] * expected
    key = dialect.score_key
    for item in results:
        index = item.get("index") if type(item) is dict else None
        score = item.get(key) if type(item) is dict else None
        # The common case inline (NaN and infinities fail the range test); the rest explains itself.
        if not (
            type(index) is int and 0 <= index < expected and type(score) is float and 0.0 <= score <= 1.0
        ):
            index, score = _index_and_score(item, key, expected, len(results), where, dialect.hosted is None)
        if scores[index] is not None:
            raise MalformedResponseError(f"{where} with index {index} twice; results are incomplete.")
        scores[index] = score
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise MalformedResponseError(
            f"{where} with {expected - len(missing)} of {expected} results; missing indices {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Was top_n set by a proxy?"
        )
    usage = read_usage(dialect, data)
    check_prompt_tokens(prompt_tokens, usage.prompt_tokens, url)
    return Parsed([s for s in scores if s is not None], usage)


def check_prompt_tokens(expected: int | None, reported: int | None, url: str) -> None:
    """Raise [`MalformedResponseError`][qwen_rerank.MalformedResponseError] when a server's
    template rendered prompts of another length than the model card's (``None``: not known)."""
    if expected is None or reported is None or expected == reported:
        return
    raise MalformedResponseError(
        f"The server at {display_url(url)} reports {reported} prompt tokens where the model card's "
        f"prompts take {expected}: its --chat-template renders another prompt, so its scores are not "
        "the model's. vLLM's own qwen3_reranker.jinja loses the prompt's final newline. Start vLLM "
        "with --chat-template set to the file qwen_rerank.prompt.server_template_path() names, or "
        "serve without a template and use template='client'."
    )


def _load_json(content: bytes, where: str, redact: Callable[[str], str], expected: int) -> Any:
    _check_size(content, where, expected)
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise MalformedResponseError(
                f"{where} with a body nested too deeply to parse: {redact(_snippet(content))!r}."
            ) from exc
        line = redact(first_line(content) or "")
        raise MalformedResponseError(
            f"{where} with a body that is not JSON; its first line: {line!r}.{_hint(200, '', content)}"
        ) from exc


# A rerank reply holds, per result, a few containers (the result, an echoed document, meta
# information) and a few values; beyond these bounds it is padding, which would cost far
# more memory parsed than its bytes (an empty list is 3 bytes of JSON and 56 of Python).
_CONTAINERS_PER_RESULT, _VALUES_PER_RESULT, _SLACK = 8, 32, 256
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _check_size(content: bytes, where: str, expected: int) -> None:
    """Refuse, before parsing, a body with more structure than a reply to ``expected`` documents has."""
    containers, values = _structure(content)
    if (
        containers > _CONTAINERS_PER_RESULT * expected + _SLACK
        or values > _VALUES_PER_RESULT * expected + _SLACK
    ):
        raise MalformedResponseError(
            f"{where} with {containers:,} JSON arrays and objects and {values:,} values for "
            f"{expected} documents, far more than any rerank reply holds (padded, or nested too deeply); "
            "it was not parsed."
        )


def _structure(content: bytes) -> tuple[int, int]:
    """The arrays and objects, and the values, of a JSON body, counted without parsing it."""
    bare = _STRING.sub(b"", content)  # strings parse to their own size; count what is outside them
    return bare.count(b"[") + bare.count(b"{"), bare.count(b",") + bare.count(b":")


def _index_and_score(
    item: Any, key: str, expected: int, count: int, where: str, self_hosted: bool
) -> tuple[int, float]:
    index = item.get("index") if isinstance(item, dict) else None
    score: Any = item.get(key) if isinstance(item, dict) else None
    if type(index) is not int or not 0 <= index < expected:
        raise MalformedResponseError(
            f"{where} with a result index {index!r} outside range({expected}) (results: {count})."
        )
    # type(), not isinstance: a JSON true is a bool, which is an int but not a score.
    if type(score) not in (float, int) or not math.isfinite(score):
        raise MalformedResponseError(
            f"{where} with {key} {score!r} for index {index}, which is not a finite number."
        )
    if not 0.0 <= score <= 1.0:
        raise MalformedResponseError(
            f"{where} with {key} {score!r} for index {index}, outside [0, 1]."
            + (_PROBABILITY_HINT if self_hosted else "")
        )
    return index, float(score)


_PROBABILITY_HINT = (
    ' Serve the model with --hf_overrides \'{..., "classifier_from_token": ["no", "yes"], '
    '"is_original_qwen3_reranker": true}\' and keep use_activation on.'
)


def server_message(content: bytes, dialect: Dialect = DIALECTS["vllm"]) -> str | None:
    """The error message in a vLLM error body (``{"error": {...}}``, flat), or a text's first line.

    A hosted API's body is read as its provider writes it (with its code). Whatever the
    server sent, the message is at most `MAX_SERVER_TEXT` characters.
    """
    containers, values = _structure(content)
    if containers > _SLACK or values > _SLACK:  # no error body has that much structure
        return first_line(content)
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return first_line(content)
    message: Any = None if dialect.hosted is None else hosted_error_text(dialect.hosted, data)
    if message is None and isinstance(data, dict):
        error, detail = data.get("error"), data.get("detail")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        else:
            message = next((v for v in (error, data.get("message"), detail) if isinstance(v, str)), None)
        if message is None and detail is not None:
            message = json.dumps(detail)[: 2 * MAX_SERVER_TEXT]
    if message is None:
        message = _snippet(content)
    return quotable(message) or None


def status_error(
    status: int,
    content: bytes,
    url: str,
    *,
    attempts: int = 1,
    redact: Callable[[str], str] = str,
    content_type: str | None = None,
    dialect: Dialect = DIALECTS["vllm"],
) -> APIStatusError:
    """[`APIStatusError`][qwen_rerank.APIStatusError] for an error status, with the server's message.

    A body that is a page (HTML, or any text that is not JSON) is summarised as its
    content type and first line, with what it most likely means.
    """
    message = server_message(content, dialect)
    if message is not None:
        message = redact(message)
    text = f"The server at {display_url(url)} answered HTTP {status}"
    if not _is_json(content):
        text += f" with {_kind(content_type)}, not JSON; its first line: {message or '(empty)'!r}"
    else:
        text += f": {message or '(no message)'}"
    if attempts > 1:
        text += f" (after {attempts} attempts)"
    text += "." + _hint(status, message or "", content, content_type, dialect)
    return APIStatusError(text, status_code=status, server_message=message)


def _hint(
    status: int,
    message: str,
    content: bytes = b"",
    content_type: str | None = None,
    dialect: Dialect = DIALECTS["vllm"],
) -> str:
    if _is_page(content, content_type):
        return (
            " This is not a rerank server's answer (a web page): check base_url, and any proxy or "
            "gateway in front of the server."
        )
    if dialect.hosted is not None:
        return _hosted_hint(dialect.hosted, status)
    if status in (401, 403):
        return " Check api_key (or the QWEN_RERANK_API_KEY environment variable)."
    if status == 404:
        if "model" in message.lower():
            return " Pass model= with a name the server serves, or model=None to use the server's."
        return " Check base_url, and that the server runs a reranker with --runner pooling."
    if status == 400 and ("context length" in message or "context size" in message):
        # vLLM: "maximum context length is N tokens"; llama-server: "exceeds the available context size".
        return (
            " Pass tokenizer= (the model's hub id or local folder) so that documents are truncated "
            "to max_length on the client, and keep max_length within the server's context: vLLM's "
            "--max-model-len, or llama-server's -c divided by its slots (-np)."
        )
    return ""


def _hosted_hint(provider: Provider, status: int) -> str:
    if status in (401, 403):
        regions = " and that the key is for this region's endpoint" if len(provider.regions) > 1 else ""
        return f" Check api_key (or the {provider.key_env} environment variable){regions}."
    if status in (400, 413, 422):
        return (
            f" The client splits requests to the limits it knows of api={provider.name!r}; lower "
            "max_documents_per_request=, or pass tokenizer= so that tokens are counted exactly."
        )
    return ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _snippet(content: bytes) -> str:
    return quotable(content[:200].decode("utf-8", "replace"))


def quotable(text: str) -> str:
    """Server text short enough to quote: cut to `MAX_SERVER_TEXT` characters.

    Control characters are kept: what prints a message escapes them (the CLI does), and
    the exception keeps the server's words as they were.
    """
    return text[:MAX_SERVER_TEXT] + (" [...]" if len(text) > MAX_SERVER_TEXT else "")


def first_line(content: bytes) -> str | None:
    """The first non-empty line of a body that is not JSON, quotable; None when it is empty."""
    text = content[: 4 * MAX_SERVER_TEXT].decode("utf-8", "replace")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return quotable(line) or None


def _is_json(content: bytes) -> bool:
    head = content[:64].lstrip()
    return head[:1] in (b"{", b"[", b'"') or not head


def _is_page(content: bytes, content_type: str | None) -> bool:
    kind = (content_type or "").lower()
    return "html" in kind or content[:64].lstrip()[:1] == b"<"


def _kind(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip()
    return f"a {quotable(kind[:80])} body" if kind else "a body of no stated type"
