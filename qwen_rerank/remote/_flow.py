"""Everything the remote backend does that is not I/O, written once for sync and async.

- `rerank_url`: where requests go.
- `chunk_bounds`: how a call becomes sub-requests (bodies: `qwen_rerank.remote._dialects`).
- `BodyReader` and `reply_limit`: a response body read under a size cap.
- `parse_scores`: a 200 response checked and mapped back by ``index``.
- `status_error`: an error status turned into [`APIStatusError`][qwen_rerank.exceptions.APIStatusError].
- `Replicas`: round-robin over base URLs, skipping one that refused a connection.
- `request_flow`: the retry and failover policy of one sub-request, as a generator.

A driver runs `request_flow` like this: the flow yields `Send` (post the
body to ``url`` within ``budget`` seconds and send back a `Reply`, or what went
wrong: the ``httpx`` exception, `BodyBroken`, `AttemptTimeout` or one of
our errors) or `Sleep` (sleep, then send back ``None``), and finally returns
`Parsed` scores or raises one of our `RemoteError` classes. The sync and async drivers
in `qwen_rerank.remote` differ only in how they post and sleep.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
)
from qwen_rerank.remote._dialects import DIALECTS, Dialect, Usage, read_usage, results_of

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
OTHER_ENDPOINTS = (
    "/score",
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/pooling",
    "/classify",
)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# How long a replica that refused a connection is skipped by new sub-requests.
REPLICA_COOLDOWN_S = 5.0


# -- URLs ---------------------------------------------------------------------------------------
def rerank_url(base_url: Any, dialect: Dialect = DIALECTS["vllm"]) -> str:
    """``base_url`` as the rerank endpoint URL.

    ``http://host:8000`` and ``.../v1`` get the dialect's default path; a URL that
    already ends in ``/rerank``, ``/v1/rerank`` or ``/v2/rerank`` is kept. A URL that
    ends in another endpoint (``/v1/score``...) is an error naming the rerank paths.
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise InvalidInputError(f"base_url must be a URL such as 'http://localhost:8000', got {base_url!r}.")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise InvalidInputError(f"base_url {display_url(base_url)!r} is not a valid URL: {exc}.") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInputError(
            f"base_url must start with http:// or https:// and name a host, got {display_url(base_url)!r}; "
            "for example 'http://localhost:8000'."
        )
    path = url.path.rstrip("/")
    if any(path.endswith(tail) for tail in RERANK_PATHS):
        return str(url.copy_with(path=path, query=None, fragment=None))
    for tail in OTHER_ENDPOINTS:
        if path.endswith(tail):
            raise InvalidInputError(
                f"base_url {display_url(base_url)!r} ends in {tail}, which is not a rerank endpoint. "
                "Give the server's root (http://host:8000) or its rerank path: one of "
                f"{', '.join(RERANK_PATHS)}."
            )
    path = path.removesuffix("/v1")
    return str(url.copy_with(path=path + dialect.default_path, query=None, fragment=None))


# -- request bodies -----------------------------------------------------------------------------
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


# -- reading a response body --------------------------------------------------------------------
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


# -- responses ----------------------------------------------------------------------------------
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
) -> Parsed:
    """Scores of a 200 rerank response, in document order, mapped by each result's ``index``.

    Echoed documents are ignored. Raises `MalformedResponseError` unless
    the body is JSON with a list of results (where ``dialect`` keeps it) holding
    exactly one finite score in [0, 1] for every index in ``range(expected)``.
    ``redact`` scrubs secrets from the quoted body.
    """
    where = f"The server at {display_url(url)} answered HTTP 200"
    data = _load_json(content, where, redact)
    results = results_of(dialect, data)
    if results is None:
        shape = "a bare list of results" if dialect.results_key is None else f"a {dialect.results_key!r} list"
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
            index, score = _index_and_score(item, key, expected, len(results), where)
        if scores[index] is not None:
            raise MalformedResponseError(f"{where} with index {index} twice; results are incomplete.")
        scores[index] = score
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise MalformedResponseError(
            f"{where} with {expected - len(missing)} of {expected} results; missing indices {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Was top_n set by a proxy?"
        )
    return Parsed([s for s in scores if s is not None], read_usage(dialect, data))


def _load_json(content: bytes, where: str, redact: Callable[[str], str]) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        what = "nested too deeply to parse" if isinstance(exc, RecursionError) else "not JSON"
        raise MalformedResponseError(
            f"{where} with a body that is {what}: {redact(_snippet(content))!r}."
        ) from exc


def _index_and_score(item: Any, key: str, expected: int, count: int, where: str) -> tuple[int, float]:
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
            f"{where} with {key} {score!r} for index {index}, outside [0, 1]. Serve the model "
            'with --hf_overrides \'{..., "classifier_from_token": ["no", "yes"], '
            '"is_original_qwen3_reranker": true}\' and keep use_activation on.'
        )
    return index, float(score)


def server_message(content: bytes) -> str | None:
    """The error message in a vLLM error body (``{"error": {...}}``, flat or plain text)."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        text = content.decode("utf-8", "replace").strip()
        return text[:500] or None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str):
                return value
        if data.get("detail") is not None:
            return json.dumps(data["detail"])[:500]
    return _snippet(content) or None


def status_error(
    status: int, content: bytes, url: str, *, attempts: int = 1, redact: Callable[[str], str] = str
) -> APIStatusError:
    """`APIStatusError` for an error status, with the server's message and a hint."""
    message = server_message(content)
    if message is not None:
        message = redact(message)
    text = f"The server at {display_url(url)} answered HTTP {status}: {message or '(no message)'}"
    if attempts > 1:
        text += f" (after {attempts} attempts)"
    text += "." + _hint(status, message or "")
    return APIStatusError(text, status_code=status, server_message=message)


def _hint(status: int, message: str) -> str:
    if status in (401, 403):
        return " Check api_key (or the QWEN_RERANK_API_KEY environment variable)."
    if status == 404:
        if "model" in message.lower():
            return " Pass model= with a name the server serves, or model=None to use the server's."
        return " Check base_url, and that the server runs a reranker with --runner pooling."
    if status == 400 and "context length" in message:
        return (
            " Pass tokenizer= (the model's hub id or local folder) so that documents are truncated "
            "to max_length on the client, and keep max_length within the server's --max-model-len."
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
    return content[:200].decode("utf-8", "replace")


# -- replicas -----------------------------------------------------------------------------------
class Replicas:
    """Round-robin over the rerank URLs; a replica that refused a connection sits out a while.

    Thread-safe; shared by every call of one reranker, sync or async.
    """

    def __init__(self, urls: Sequence[str], cooldown: float = REPLICA_COOLDOWN_S) -> None:
        self.urls = list(urls)
        self._cooldown = cooldown
        self._down_until = [0.0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, exclude: Sequence[int] = ()) -> int:
        """The next replica in turn that is up and not in ``exclude``; else the next not excluded."""
        with self._lock:
            now = time.monotonic()
            n = len(self.urls)
            candidates = [(self._next + k) % n for k in range(n)]
            fresh = [i for i in candidates if i not in exclude] or candidates
            up = [i for i in fresh if self._down_until[i] <= now]
            chosen = (up or fresh)[0]
            self._next = (chosen + 1) % n
            return chosen

    def mark_down(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = time.monotonic() + self._cooldown

    def mark_up(self, index: int) -> None:
        if self._down_until[index]:
            with self._lock:
                self._down_until[index] = 0.0


# -- the retry and failover policy --------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """What is retried, how often, and how long to wait.

    ``max_retries`` retries follow the first attempt. The wait before retry ``k``
    (from 0) is ``min(max_wait, backoff * 2**k)`` scaled by a random factor in
    [0.5, 1], or exactly the server's ``Retry-After`` when it sent one; a
    ``Retry-After`` longer than ``max_wait`` is not waited for: the error is raised.
    A connection refused by one replica moves on to an untried one at once,
    without using a retry.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_wait: float = 30.0

    def wait(self, retry: int, retry_after: float | None, rand: Callable[[], float] = random.random) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.max_wait, self.backoff * 2.0**retry) * (0.5 + rand() / 2)


@dataclass(frozen=True)
class Send:
    """Post the body to ``url``; the attempt, body included, must end within ``budget`` seconds."""

    url: str
    budget: float | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    retry_after: str | None = None


class BodyBroken(Exception):
    """The status line arrived, then the connection broke before the whole body had."""

    def __init__(self, status: int, received: int, cause: Exception) -> None:
        super().__init__(f"HTTP {status} arrived, then the body broke off after {received} bytes: {cause}")
        self.status, self.received = status, received


class AttemptTimeout(Exception):
    """One attempt, body included, ran past its budget (a slow or trickling server)."""

    def __init__(self, budget: float) -> None:
        super().__init__(f"the attempt ran past its {budget:g} s budget")
        self.budget = budget


Outcome = Reply | Exception | None
Flow = Generator[Send | Sleep, Outcome, Parsed]

_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
# The connection broke before any response arrived: safe to resend, rerank is idempotent.
_DROPPED_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def request_flow(
    replicas: Replicas,
    policy: RetryPolicy,
    expected: int,
    *,
    dialect: Dialect = DIALECTS["vllm"],
    budget: float | None = None,
    deadline_at: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    redact: Callable[[str], str] = str,
    log: Callable[[str], None] | None = None,
) -> Flow:
    """One sub-request's life: send, retry or fail over, and return its scores in order.

    Each attempt may take ``budget`` seconds; the whole flow ends by ``deadline_at``
    (on ``clock``): no attempt starts, and no backoff sleeps, past it. Raises
    `APIStatusError`, `MalformedResponseError`, `RemoteTimeoutError`,
    `RemoteConnectionError` or `RemoteError`, with the last underlying
    error as ``__cause__``. ``redact`` scrubs secrets from every message and log line.
    """
    try:
        return (
            yield from _flow(replicas, policy, expected, dialect, budget, deadline_at, clock, redact, log)
        )
    except RemoteError as exc:
        exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        raise


def _flow(
    replicas: Replicas,
    policy: RetryPolicy,
    expected: int,
    dialect: Dialect,
    budget: float | None,
    deadline_at: float | None,
    clock: Callable[[], float],
    redact: Callable[[str], str],
    log: Callable[[str], None] | None,
) -> Flow:
    retries = 0
    tried: list[int] = []
    index = replicas.pick()
    cause: Exception | None = None
    while True:
        url = replicas.urls[index]
        left = None if deadline_at is None else deadline_at - clock()
        if left is not None and left <= 0:
            raise _deadline_error(url, len(tried), cause)
        tried.append(index)
        outcome = yield Send(url, _min(budget, left))
        retry_after: float | None = None
        if isinstance(outcome, Reply):
            replicas.mark_up(index)
            if outcome.status == 200:
                return parse_scores(outcome.content, expected, url, dialect=dialect, redact=redact)
            error = status_error(outcome.status, outcome.content, url, attempts=len(tried), redact=redact)
            if outcome.status not in RETRY_STATUSES or retries >= policy.max_retries:
                raise error
            retry_after = parse_retry_after(outcome.retry_after)
            if retry_after is not None and retry_after > policy.max_wait:
                raise APIStatusError(
                    f"{error} The server asked to retry after {retry_after:.0f} s, longer than "
                    f"max_retry_wait={policy.max_wait:g} s.",
                    status_code=error.status_code,
                    server_message=error.server_message,
                )
            cause = error
        elif isinstance(outcome, _CONNECT_ERRORS):
            replicas.mark_down(index)
            untried = [i for i in range(len(replicas.urls)) if i not in tried]
            if untried:
                _log(log, redact(f"{display_url(url)} unreachable ({outcome!r}); failing over"))
                index, cause = replicas.pick(exclude=tried), outcome
                continue
            if retries >= policy.max_retries:
                raise RemoteConnectionError(
                    f"Could not connect to {_servers(replicas, tried)} after {len(tried)} "
                    f"attempt{'' if len(tried) == 1 else 's'}: "
                    f"{outcome}. Check that the server is running and that base_url is right."
                ) from outcome
            cause = outcome
        elif isinstance(outcome, _DROPPED_ERRORS):
            if retries >= policy.max_retries:
                raise RemoteConnectionError(
                    f"The connection to {display_url(url)} broke before a response, {len(tried)} times: "
                    f"{outcome}."
                ) from outcome
            cause = outcome
        else:
            raise _attempt_error(outcome, url)
        delay = policy.wait(retries, retry_after)
        left = None if deadline_at is None else deadline_at - clock()
        if left is not None and delay >= left:
            raise _deadline_error(url, len(tried), cause)
        retries += 1
        _log(
            log,
            redact(
                f"retry {retries}/{policy.max_retries} of {display_url(url)} in {delay:.2f} s after {cause}"
            ),
        )
        yield Sleep(delay)
        index = replicas.pick(exclude=[index] if len(replicas.urls) > 1 else ())


def _attempt_error(outcome: Outcome, url: str) -> RemoteError:
    """Our error for an outcome that is never retried: a timeout, a broken body, our own error."""
    error: RemoteError
    if isinstance(outcome, RemoteError):
        return outcome
    if isinstance(outcome, (httpx.TimeoutException, AttemptTimeout)):
        error = RemoteTimeoutError(_timeout_message(outcome, url))
    elif isinstance(outcome, BodyBroken):
        error = MalformedResponseError(
            f"The server at {display_url(url)} answered, but {outcome}. Not retried: the server did "
            "reply, so check its logs."
        )
    elif isinstance(outcome, Exception):
        error = RemoteError(f"Request to {display_url(url)} failed: {outcome!r}.")
    else:  # pragma: no cover - a driver bug
        raise RuntimeError(f"request_flow got {outcome!r} after Send")
    error.__cause__ = outcome
    return error


def _deadline_error(url: str, attempts: int, cause: Exception | None) -> RemoteTimeoutError:
    last = f" The last attempt failed with: {cause}" if cause is not None else ""
    error = RemoteTimeoutError(
        f"The call's deadline passed after {attempts} attempt(s) at {display_url(url)}.{last} "
        "Raise deadline=, or lower max_retries/timeout."
    )
    error.__cause__ = cause
    return error


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _servers(replicas: Replicas, tried: Sequence[int]) -> str:
    names = sorted({display_url(replicas.urls[i]) for i in tried})
    return names[0] if len(names) == 1 else "any of " + ", ".join(names)


def _timeout_message(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.PoolTimeout):
        return (
            f"No free connection to {display_url(url)} within the timeout: too many requests at once. "
            "Raise timeout, or lower the number of concurrent calls."
        )
    if isinstance(exc, AttemptTimeout):
        return (
            f"The server at {display_url(url)} did not answer within the timeout ({exc.budget:g} s for the "
            "whole attempt, body included). Raise timeout=, or send fewer documents per request."
        )
    return (
        f"The server at {display_url(url)} did not answer within the timeout ({type(exc).__name__}). "
        "Raise timeout=, or send fewer documents per request (max_documents_per_request=)."
    )


def _log(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)
