"""Everything the remote backend does that is not I/O, written once for sync and async.

- :func:`rerank_url` / :func:`display_url`: where requests go, and how a URL is shown.
- :func:`chunk_bounds` and :func:`encode_body`: how a call becomes sub-requests.
- :func:`parse_scores`: a 200 response checked and mapped back by ``index``.
- :func:`status_error`: an error status turned into :class:`APIStatusError`.
- :class:`Replicas`: round-robin over base URLs, skipping one that refused a connection.
- :func:`request_flow`: the retry and failover policy of one sub-request, as a generator.

A driver runs :func:`request_flow` like this: the flow yields :class:`Send` (post the
body to ``url`` and send back a :class:`Reply`, or the ``httpx`` exception that the post
raised) or :class:`Sleep` (sleep, then send back ``None``), and finally returns the
scores or raises one of our :class:`RemoteError` classes. The sync and async drivers
in :mod:`qwen_rerank.remote` differ only in how they post and sleep.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
)

RERANK_PATH = "/v1/rerank"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# How long a replica that refused a connection is skipped by new sub-requests.
REPLICA_COOLDOWN_S = 5.0


# -- URLs ---------------------------------------------------------------------------------------
def rerank_url(base_url: Any) -> str:
    """``base_url`` (``http://host:8000``, ``.../v1`` or ``.../v1/rerank``) as the rerank endpoint URL."""
    if not isinstance(base_url, str) or not base_url.strip():
        raise InvalidInputError(f"base_url must be a URL such as 'http://localhost:8000', got {base_url!r}.")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise InvalidInputError(f"base_url {base_url!r} is not a valid URL: {exc}.") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInputError(
            f"base_url must start with http:// or https:// and name a host, got {display_url(base_url)!r}; "
            "for example 'http://localhost:8000'."
        )
    path = url.path.rstrip("/")
    for tail in ("/rerank", "/v1"):
        path = path.removesuffix(tail)
    return str(url.copy_with(path=path + RERANK_PATH, query=None, fragment=None))


def display_url(url: str) -> str:
    """``url`` without any user:password part, for messages and logs."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


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


def encode_body(query: str, documents: Sequence[str], model: str | None, fields: Mapping[str, Any]) -> bytes:
    """The JSON body of one ``/v1/rerank`` request. ``model=None`` lets the server use its own."""
    body: dict[str, Any] = {"query": query, "documents": list(documents)}
    if model is not None:
        body["model"] = model
    body.update(fields)
    # For ASCII text both settings give the same bytes, and ensure_ascii=True is ~2x faster
    # in CPython; other text is sent as UTF-8, half the size of \u escapes.
    ascii_only = query.isascii() and all(doc.isascii() for doc in documents)
    return json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False).encode("utf-8")


# -- responses ----------------------------------------------------------------------------------
def parse_scores(
    content: bytes, expected: int, url: str, *, redact: Callable[[str], str] = str
) -> list[float]:
    """Scores of a 200 rerank response, in document order, mapped by each result's ``index``.

    The echoed ``document.text`` is ignored. Raises :class:`MalformedResponseError`
    unless the body is JSON with a ``results`` list holding exactly one finite score
    in [0, 1] for every index in ``range(expected)``. ``redact`` scrubs secrets
    from the quoted body.
    """
    where = f"The server at {display_url(url)} answered HTTP 200"
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise MalformedResponseError(
            f"{where} with a body that is not JSON: {redact(_snippet(content))!r}."
        ) from exc
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise MalformedResponseError(
            f"{where} without a 'results' list: {redact(_snippet(content))!r}. "
            "Is this a vLLM /v1/rerank endpoint?"
        )
    scores: list[float | None] = [None] * expected
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score: Any = item.get("relevance_score") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < expected:
            raise MalformedResponseError(
                f"{where} with a result index {index!r} outside range({expected}) (results: {len(results)})."
            )
        if scores[index] is not None:
            raise MalformedResponseError(f"{where} with index {index} twice; results are incomplete.")
        # type(), not isinstance: a JSON true is a bool, which is an int but not a score.
        if type(score) not in (float, int) or not math.isfinite(score):
            raise MalformedResponseError(
                f"{where} with relevance_score {score!r} for index {index}, which is not a finite number."
            )
        if not 0.0 <= score <= 1.0:
            raise MalformedResponseError(
                f"{where} with relevance_score {score!r} for index {index}, outside [0, 1]. Serve the model "
                'with --hf_overrides \'{..., "classifier_from_token": ["no", "yes"], '
                '"is_original_qwen3_reranker": true}\' and keep use_activation on.'
            )
        scores[index] = float(score)
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise MalformedResponseError(
            f"{where} with {expected - len(missing)} of {expected} results; missing indices {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Was top_n set by a proxy?"
        )
    return [s for s in scores if s is not None]


def server_message(content: bytes) -> str | None:
    """The error message in a vLLM error body (``{"error": {...}}``, flat or plain text)."""
    try:
        data = json.loads(content)
    except ValueError:
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
    """:class:`APIStatusError` for an error status, with the server's message and a hint."""
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
    url: str


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    retry_after: str | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> Reply:
        """The parts of a read ``response`` that the flow needs."""
        return cls(response.status_code, response.content, response.headers.get("retry-after"))


Outcome = Reply | Exception | None
Flow = Generator[Send | Sleep, Outcome, list[float]]

_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
# The connection broke before any response arrived: safe to resend, rerank is idempotent.
_DROPPED_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def request_flow(
    replicas: Replicas,
    policy: RetryPolicy,
    expected: int,
    *,
    redact: Callable[[str], str] = str,
    log: Callable[[str], None] | None = None,
) -> Flow:
    """One sub-request's life: send, retry or fail over, and return its scores in order.

    Raises :class:`APIStatusError`, :class:`MalformedResponseError`,
    :class:`RemoteTimeoutError`, :class:`RemoteConnectionError` or :class:`RemoteError`,
    with the last underlying error as ``__cause__``. ``redact`` scrubs secrets
    from messages that quote the server.
    """
    retries = 0
    tried: list[int] = []
    index = replicas.pick()
    while True:
        url = replicas.urls[index]
        tried.append(index)
        outcome = yield Send(url)
        retry_after: float | None = None
        if isinstance(outcome, Reply):
            replicas.mark_up(index)
            if outcome.status == 200:
                return parse_scores(outcome.content, expected, url, redact=redact)
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
            cause: Exception = error
        elif isinstance(outcome, _CONNECT_ERRORS):
            replicas.mark_down(index)
            untried = [i for i in range(len(replicas.urls)) if i not in tried]
            if untried:
                _log(log, f"{display_url(url)} unreachable ({outcome!r}); failing over")
                index = replicas.pick(exclude=tried)
                continue
            if retries >= policy.max_retries:
                raise RemoteConnectionError(
                    f"Could not connect to {_servers(replicas, tried)} after {len(tried)} "
                    f"attempt{'' if len(tried) == 1 else 's'}: "
                    f"{outcome}. Check that the vLLM server is running and that base_url is right."
                ) from outcome
            cause = outcome
        elif isinstance(outcome, _DROPPED_ERRORS):
            if retries >= policy.max_retries:
                raise RemoteConnectionError(
                    f"The connection to {display_url(url)} broke before a response, {len(tried)} times: "
                    f"{outcome}."
                ) from outcome
            cause = outcome
        elif isinstance(outcome, httpx.TimeoutException):
            raise RemoteTimeoutError(_timeout_message(outcome, url)) from outcome
        elif isinstance(outcome, Exception):
            raise RemoteError(f"Request to {display_url(url)} failed: {outcome!r}.") from outcome
        else:  # pragma: no cover - a driver bug
            raise RuntimeError(f"request_flow got {outcome!r} after Send")
        delay = policy.wait(retries, retry_after)
        retries += 1
        _log(
            log, f"retry {retries}/{policy.max_retries} of {display_url(url)} in {delay:.2f} s after {cause}"
        )
        yield Sleep(delay)
        index = replicas.pick(exclude=[index] if len(replicas.urls) > 1 else ())


def _servers(replicas: Replicas, tried: Sequence[int]) -> str:
    names = sorted({display_url(replicas.urls[i]) for i in tried})
    return names[0] if len(names) == 1 else "any of " + ", ".join(names)


def _timeout_message(exc: httpx.TimeoutException, url: str) -> str:
    if isinstance(exc, httpx.PoolTimeout):
        return (
            f"No free connection to {display_url(url)} within the timeout: too many requests at once. "
            "Raise timeout, or lower the number of concurrent calls."
        )
    return (
        f"The server at {display_url(url)} did not answer within the timeout ({type(exc).__name__}). "
        "Raise timeout=, or send fewer documents per request (max_documents_per_request=)."
    )


def _log(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)
