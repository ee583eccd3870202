"""The retry and failover policy of one sub-request, as a generator that does no I/O.

Its sender runs [`request_flow`][qwen_rerank.remote._retry.request_flow] like this: the flow
yields [`Send`][qwen_rerank.remote._retry.Send] (post the body to ``url`` within ``budget``
seconds and send back a [`Reply`][qwen_rerank.remote._retry.Reply], or what went wrong: the
``httpx`` exception, `BodyBroken`, `AttemptTimeout` or one of our errors) or
[`Sleep`][qwen_rerank.remote._retry.Sleep] (sleep, then send back ``None``), and finally
returns [`Parsed`][qwen_rerank.remote._replies.Parsed] scores or raises one of our
[`RemoteError`][qwen_rerank.RemoteError] classes. The sync and async twins of
[`Sender`][qwen_rerank.remote._sender.Sender] that run it differ only in how they post and sleep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import httpx

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import (
    APIStatusError,
    MalformedResponseError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
)
from qwen_rerank.remote._dialects import DIALECTS, Dialect
from qwen_rerank.remote._replies import Parsed, parse_retry_after, parse_scores, status_error
from qwen_rerank.remote._urls import Replicas

__all__ = [
    "RETRY_STATUSES",
    "AttemptTimeout",
    "BodyBroken",
    "Flow",
    "Outcome",
    "Reply",
    "RetryPolicy",
    "Send",
    "Sleep",
    "request_flow",
]

RETRY_STATUSES = frozenset({429, 502, 503, 504})


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
    content_type: str | None = None


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
    prompt_tokens: int | None = None,
) -> Flow:
    """One sub-request's life: send, retry or fail over, and return its scores in order.

    Each attempt may take ``budget`` seconds; the whole flow ends by ``deadline_at``
    (on ``clock``): no attempt starts, and no backoff sleeps, past it. Raises
    [`APIStatusError`][qwen_rerank.APIStatusError],
    [`MalformedResponseError`][qwen_rerank.MalformedResponseError],
    [`RemoteTimeoutError`][qwen_rerank.RemoteTimeoutError],
    [`RemoteConnectionError`][qwen_rerank.RemoteConnectionError] or
    [`RemoteError`][qwen_rerank.RemoteError], with the last underlying error as
    ``__cause__``. ``redact`` scrubs secrets from every message and log line. With
    ``prompt_tokens`` a reply must report that many prompt tokens (see `parse_scores`).
    """
    run = _Run(replicas, policy, expected, dialect, budget, deadline_at, clock, redact, log, prompt_tokens)
    try:
        return (yield from _flow(run))
    except RemoteError as exc:
        exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        raise


@dataclass
class _Run:
    """The settings and the state of one flow: attempts made, retries used, the last error."""

    replicas: Replicas
    policy: RetryPolicy
    expected: int
    dialect: Dialect
    budget: float | None
    deadline_at: float | None
    clock: Callable[[], float]
    redact: Callable[[str], str]
    log: Callable[[str], None] | None
    prompt_tokens: int | None
    retries: int = 0
    tried: list[int] = field(default_factory=list)
    cause: Exception | None = None

    def left(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - self.clock()

    def spent(self) -> bool:
        return self.retries >= self.policy.max_retries


_FAIL_OVER = -1.0  # what _judge returns when the next attempt goes to an untried replica at once


def _flow(run: _Run) -> Flow:
    index = run.replicas.pick()
    while True:
        url = run.replicas.urls[index]
        left = run.left()
        if left is not None and left <= 0:
            raise _deadline_error(url, len(run.tried), run.cause)
        run.tried.append(index)
        outcome = yield Send(url, _min(run.budget, left))
        if isinstance(outcome, Reply) and outcome.status == 200:
            run.replicas.mark_up(index)
            return parse_scores(
                outcome.content,
                run.expected,
                url,
                dialect=run.dialect,
                redact=run.redact,
                prompt_tokens=run.prompt_tokens,
            )
        retry_after = _judge(run, index, url, outcome)
        if retry_after == _FAIL_OVER:
            index = run.replicas.pick(exclude=run.tried)
            continue
        delay = run.policy.wait(run.retries, retry_after)
        left = run.left()
        if left is not None and delay >= left:
            raise _deadline_error(url, len(run.tried), run.cause)
        run.retries += 1
        note = f"retry {run.retries}/{run.policy.max_retries} of {display_url(url)} in {delay:.2f} s"
        _log(run.log, run.redact(f"{note} after {run.cause}"))
        yield Sleep(delay)
        index = run.replicas.pick(exclude=[index] if len(run.replicas.urls) > 1 else ())


def _judge(run: _Run, index: int, url: str, outcome: Outcome) -> float | None:
    """Raise the error that ends the flow, or note the cause and return the wait asked (or `_FAIL_OVER`)."""
    if isinstance(outcome, Reply):
        run.replicas.mark_up(index)
        return _judge_status(run, url, outcome)
    if isinstance(outcome, _CONNECT_ERRORS):
        run.replicas.mark_down(index)
        if any(i not in run.tried for i in range(len(run.replicas.urls))):
            _log(run.log, run.redact(f"{display_url(url)} unreachable ({outcome!r}); failing over"))
            run.cause = outcome
            return _FAIL_OVER
        if run.spent():
            raise RemoteConnectionError(
                f"Could not connect to {_servers(run.replicas, run.tried)} after {len(run.tried)} "
                f"attempt{'' if len(run.tried) == 1 else 's'}: "
                f"{outcome}. Check that the server is running and that base_url is right."
            ) from outcome
    elif isinstance(outcome, _DROPPED_ERRORS):
        if run.spent():
            raise RemoteConnectionError(
                f"The connection to {display_url(url)} broke before a response, {len(run.tried)} times: "
                f"{outcome}."
            ) from outcome
    else:
        raise _attempt_error(outcome, url)
    run.cause = outcome
    return None


def _judge_status(run: _Run, url: str, reply: Reply) -> float | None:
    error = status_error(
        reply.status,
        reply.content,
        url,
        attempts=len(run.tried),
        redact=run.redact,
        content_type=reply.content_type,
        dialect=run.dialect,
    )
    if reply.status not in RETRY_STATUSES or run.spent():
        raise error
    retry_after = parse_retry_after(reply.retry_after)
    if retry_after is not None and retry_after > run.policy.max_wait:
        raise APIStatusError(
            f"{error} The server asked to retry after {retry_after:.0f} s, longer than "
            f"max_retry_wait={run.policy.max_wait:g} s.",
            status_code=error.status_code,
            server_message=error.server_message,
        )
    run.cause = error
    return retry_after


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
    else:  # pragma: no cover - a bug of the sender
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
