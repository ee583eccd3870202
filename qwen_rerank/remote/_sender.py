"""The remote backend's one send seam: every request of every call goes out through it.

A [`Sender`][qwen_rerank.remote._sender.Sender] is made once per reranker, from what it
sends (a [`RequestBuilder`][qwen_rerank.remote._bodies.RequestBuilder]), where
([`Endpoints`][qwen_rerank.remote._settings.Endpoints]: replicas, headers, the redactor),
how long ([`Timing`][qwen_rerank.remote._settings.Timing]) and over which
[`Connections`][qwen_rerank.remote._clients.Connections]. A call hands it its requests
(`Sender.send`, or `Sender.asend` in async code); it then, in sync and async twins:

- sends every sub-request of the call's [`Batch`][qwen_rerank.remote._bodies.Batch], at
  most ``max_concurrency`` at once (on a thread pool, or as tasks);
- runs each sub-request's retry and failover flow
  ([`request_flow`][qwen_rerank.remote._retry.request_flow]), sleeping when it says so;
- makes each attempt (`attempt` / `aattempt`): posts one body and reads the reply under
  the size cap and the attempt's budget; what went wrong is mapped once, by `outcome_of`;
- holds the call's deadline, and sums the usage servers report into ``last_usage``.

What to send, when to retry and what a reply means live once, in the pure modules
beside this one; connections and their sockets in `_clients` and `_transport`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx

from qwen_rerank._requests import Progress, Request
from qwen_rerank._secrets import display_url
from qwen_rerank._tracing import note_attempt
from qwen_rerank.exceptions import MalformedResponseError
from qwen_rerank.remote._bodies import Batch, RequestBuilder, SubRequest
from qwen_rerank.remote._clients import Connections
from qwen_rerank.remote._dialects import Usage
from qwen_rerank.remote._replies import BodyReader, Parsed
from qwen_rerank.remote._retry import (
    AttemptTimeout,
    BodyBroken,
    Flow,
    Outcome,
    Reply,
    Send,
    Sleep,
    request_flow,
)
from qwen_rerank.remote._settings import Endpoints, Timing
from qwen_rerank.remote._transport import attempt_ends

__all__ = ["Exchange", "Sender", "aattempt", "attempt", "outcome_of"]

# The reranker's logger: its retries are logged under the name users filter by.
logger = logging.getLogger("qwen_rerank.remote._reranker")

# Most documents whose request bodies an async call builds on the event loop itself.
_BUILD_ON_LOOP = 64


class Sender:
    """Sends the requests of a call to the replicas: fan-out, retries, failover, attempts, usage.

    Args:
        builder: How a request becomes sub-request bodies (its dialect reads the replies).
        endpoints: The replicas, the headers each is sent, and the secrets no message may show.
        timing: The attempt's budget, the call's deadline and the retry policy.
        connections: The clients and threads to send with.
    """

    def __init__(
        self, builder: RequestBuilder, endpoints: Endpoints, timing: Timing, connections: Connections
    ) -> None:
        self._builder, self._endpoints, self._timing = builder, endpoints, timing
        self._connections = connections
        self.last_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar(
            "qwen_rerank_last_usage", default=None
        )
        self._open: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
            "qwen_rerank_open_call", default=None
        )

    def send(self, requests: list[Request], instruction: str, progress: Progress | None) -> list[list[float]]:
        """The scores of ``requests``, from their sub-requests, at most ``max_concurrency`` in flight.

        They count to the call open in `call` (else to a call of their own): its deadline holds
        every sub-request, and its usage sums them. The first failure fails the call, once the
        sub-requests not yet started are cancelled and those running have finished.
        """
        with self._within_call(instruction) as call:
            batch = Batch(self._builder, requests, instruction, progress)
            call.add(len(batch.pending()))
            with self._connections.sync_client() as client:
                self._fan_out(batch, client, call)
        return batch.results()

    async def asend(
        self, requests: list[Request], instruction: str, progress: Progress | None
    ) -> list[list[float]]:
        """Async `send`: tasks gated to ``max_concurrency``, all ended before it returns."""
        with self._within_call(instruction) as call:
            if sum(len(documents) for _, documents in requests) > _BUILD_ON_LOOP:
                # Tokenizing and encoding many bodies takes long: never on the event loop.
                batch = await asyncio.to_thread(Batch, self._builder, requests, instruction, progress)
            else:
                batch = Batch(self._builder, requests, instruction, progress)
            call.add(len(batch.pending()))
            async with self._connections.async_client() as client:
                await self._afan_out(batch, client, call)
        return batch.results()

    # -- the call: its instructions, its deadline, its usage --------------------------------------
    @contextlib.contextmanager
    def call(self, instructions: list[str]) -> Iterator[_Call]:
        """One public call, around all its `send` and `asend`: every instruction is checked before
        anything is sent, one deadline runs from now, and ``last_usage`` is the sum at the end.

        Raises:
            InvalidInputError: an instruction this dialect cannot send.
        """
        for instruction in instructions:
            self._builder.check_instruction(instruction)
        call = _Call(self._timing, self._builder.limits.max_concurrency)
        token = self._open.set(call)
        try:
            yield call
        finally:
            self._open.reset(token)
            self.last_usage.set(call.usage)

    @contextlib.contextmanager
    def _within_call(self, instruction: str) -> Iterator[_Call]:
        open_call = self._open.get()
        if open_call is not None:
            yield open_call
            return
        with self.call([instruction]) as call:
            yield call

    def _fan_out(self, batch: Batch, client: httpx.Client, call: _Call) -> None:
        """Send every sub-request of ``batch``: one on this thread, more on the pool."""
        pending = batch.pending()
        if len(pending) == 1:
            key, sub = pending[0]
            batch.done(key, self._send_one(client, sub, call))
            return
        with self._connections.executor.use() as executor:
            futures = {
                executor.submit(contextvars.copy_context().run, self._send_one, client, sub, call): key
                for key, sub in pending
            }
            try:
                for future in concurrent.futures.as_completed(futures):
                    batch.done(futures[future], future.result())
            finally:
                for future in futures:
                    future.cancel()
                concurrent.futures.wait(futures)

    async def _afan_out(self, batch: Batch, client: httpx.AsyncClient, call: _Call) -> None:
        """Async `_fan_out`: tasks gated to ``max_concurrency`` in flight, all ended before it returns."""
        pending = batch.pending()
        if len(pending) == 1:
            key, sub = pending[0]
            batch.done(key, await self._asend_one(client, sub, call))
            return
        gate = asyncio.Semaphore(self._builder.limits.max_concurrency)

        async def gated(key: tuple[int, int], sub: SubRequest) -> tuple[tuple[int, int], list[float]]:
            async with gate:
                return key, await self._asend_one(client, sub, call)

        tasks = [asyncio.ensure_future(gated(key, sub)) for key, sub in pending]
        try:
            for next_done in asyncio.as_completed(tasks):
                batch.done(*await next_done)
        finally:
            # One failure fails the call: stop the rest, and collect their outcomes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one sub-request: its flow of attempts, retries and failover ----------------------------
    def _send_one(self, client: httpx.Client, sub: SubRequest, call: _Call) -> list[float]:
        """The scores of ``sub``: its flow run to the end, posting and sleeping as it asks."""
        flow = self._flow(sub, call.deadline_at())
        try:
            action = next(flow)
            while True:
                if isinstance(action, Sleep):
                    time.sleep(action.seconds)
                    action = flow.send(None)
                else:
                    action = flow.send(attempt(client, self._exchange(sub, action)))
        except StopIteration as done:
            return call.counted(done.value)
        finally:
            flow.close()

    async def _asend_one(self, client: httpx.AsyncClient, sub: SubRequest, call: _Call) -> list[float]:
        """Async `_send_one`."""
        flow = self._flow(sub, call.deadline_at())
        try:
            action = next(flow)
            while True:
                if isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    action = flow.send(None)
                else:
                    action = flow.send(await aattempt(client, self._exchange(sub, action)))
        except StopIteration as done:
            return call.counted(done.value)
        finally:
            flow.close()

    def _flow(self, sub: SubRequest, deadline_at: float | None) -> Flow:
        return request_flow(
            self._endpoints.replicas,
            self._timing.policy,
            sub.end - sub.start,
            dialect=self._builder.dialect,
            budget=self._timing.attempt,
            deadline_at=deadline_at,
            redact=self._endpoints.redact,
            log=logger.info,
            prompt_tokens=sub.prompt_tokens,
        )

    def _exchange(self, sub: SubRequest, send: Send) -> Exchange:
        note_attempt(send.url, sub)  # one exchange per attempt: the span counts them
        return Exchange(sub, send, self._endpoints.headers[send.url], self._builder.limits.max_response_bytes)


class _Call:
    """One public call: when it must end, and the usage of its sub-requests, summed as they finish
    (possibly on several threads)."""

    def __init__(self, timing: Timing, concurrency: int) -> None:
        self._started = time.monotonic()
        self._timing, self._concurrency = timing, concurrency
        self._allowed = 0.0 if timing.auto else timing.deadline
        self.usage = Usage()
        self._lock = threading.Lock()

    def add(self, sub_requests: int) -> None:
        """Count ``sub_requests`` more to send: with ``deadline="auto"`` each round of
        ``max_concurrency`` of them gets one more worst case of a sub-request."""
        per_round = self._timing.deadline
        if self._timing.auto and per_round is not None and sub_requests:
            with self._lock:
                self._allowed = (self._allowed or 0.0) + -(-sub_requests // self._concurrency) * per_round

    def deadline_at(self) -> float | None:
        """When the call must end (on ``time.monotonic``); ``None``: never."""
        allowed = self._allowed
        return None if allowed is None else self._started + allowed

    def counted(self, parsed: Parsed) -> list[float]:
        """``parsed``'s scores, its usage added to the call's."""
        with self._lock:
            self.usage = self.usage + parsed.usage
        return parsed.scores


@dataclass(frozen=True)
class Exchange:
    """One attempt of one sub-request: everything about it that is not I/O."""

    sub: SubRequest
    send: Send
    headers: dict[str, str]
    limit: int | None  # most decoded bytes of the reply; None: the most a valid reply takes

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        timeout = _clipped(client.timeout, self.send.budget)
        return client.build_request(
            "POST", self.send.url, content=self.sub.body, headers=self.headers, timeout=timeout
        )

    def reader(self, response: httpx.Response) -> BodyReader:
        # A body the client already read is kept decoded (see `_kept`).
        encoding = None if response.is_stream_consumed else response.headers.get("content-encoding")
        sub = self.sub
        return BodyReader.for_reply_to(sub.body, sub.end - sub.start, self.limit, encoding, self.send.url)

    def raw(self, response: httpx.Response) -> Iterator[bytes]:
        """The body's bytes as they arrive, or as the client kept them if it read them already."""
        if response.is_stream_consumed:
            yield _kept(response, self.send.url)
            return
        yield from response.iter_raw()

    async def araw(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """Async `raw`."""
        if response.is_stream_consumed:
            yield _kept(response, self.send.url)
            return
        async for chunk in response.aiter_raw():
            yield chunk

    @staticmethod
    def reply(response: httpx.Response, reader: BodyReader) -> Reply:
        headers = response.headers
        return Reply(
            response.status_code, reader.content(), headers.get("retry-after"), headers.get("content-type")
        )

    def overran(self, started: float) -> bool:
        return self.send.budget is not None and time.monotonic() - started > self.send.budget

    def out_of_time(self, started: float) -> bool:
        """Whether the attempt's budget is spent (to the few milliseconds a timer may fire early)."""
        return self.send.budget is not None and time.monotonic() - started >= self.send.budget - 0.005


def _clipped(base: httpx.Timeout, budget: float | None) -> httpx.Timeout:
    """``base`` with no phase longer than the attempt's ``budget``."""
    if budget is None:
        return base

    def clip(seconds: float | None) -> float:
        return budget if seconds is None else min(seconds, budget)

    return httpx.Timeout(
        connect=clip(base.connect), read=clip(base.read), write=clip(base.write), pool=clip(base.pool)
    )


def _kept(response: httpx.Response, url: str) -> bytes:
    """The body an injected client read before handing the response back (httpx's
    ``MockTransport`` does, and so does an event hook that logs it), decoded."""
    try:
        return response.content
    except httpx.ResponseNotRead as exc:
        raise MalformedResponseError(
            f"The reply from {display_url(url)} came back from http_client= with its body already "
            "consumed and not kept (an event hook or transport read it as a stream); read it there "
            "with response.read(), which keeps it."
        ) from exc


def outcome_of(
    exc: httpx.HTTPError | httpx.StreamError | MalformedResponseError,
    response: httpx.Response | None,
    reader: BodyReader | None,
) -> Outcome:
    """What an attempt that raised ``exc`` comes to, for the retry flow to judge.

    Before a status line, the httpx error itself (the flow retries connection failures
    and dropped connections); after one, a timeout or our own error as is, and any other
    transport error as [`BodyBroken`][qwen_rerank.remote._retry.BodyBroken]: the server
    did answer, so it is not resent.
    """
    if response is None or isinstance(exc, (MalformedResponseError, httpx.TimeoutException)):
        return exc
    return BodyBroken(response.status_code, reader.received if reader else 0, exc)


def attempt(client: httpx.Client, exchange: Exchange) -> Outcome:
    """One POST, read under the size cap and the attempt's budget; what came of it.

    With our own client every socket operation ends by the end of the budget (see
    `qwen_rerank.remote._transport`); an injected client's own timeouts apply between
    reads, and the budget is checked after each piece of the body.
    """
    started = time.monotonic()
    budget = exchange.send.budget
    response: httpx.Response | None = None
    reader: BodyReader | None = None
    try:
        with attempt_ends(None if budget is None else started + budget):
            response = client.send(exchange.request(client), stream=True)
            try:
                reader = exchange.reader(response)
                for chunk in exchange.raw(response):
                    reader.feed(chunk)
                    if exchange.overran(started):
                        return AttemptTimeout(budget or 0.0)
                return exchange.reply(response, reader)
            finally:
                response.close()
    except (httpx.HTTPError, httpx.StreamError, MalformedResponseError) as exc:
        if isinstance(exc, httpx.TimeoutException) and exchange.out_of_time(started):
            return AttemptTimeout(budget or 0.0)  # our transport ended it at the attempt's end
        return outcome_of(exc, response, reader)


async def aattempt(client: httpx.AsyncClient, exchange: Exchange) -> Outcome:
    """Async `attempt`: the whole attempt runs under ``send.budget``."""
    try:
        return await asyncio.wait_for(_aattempt(client, exchange), exchange.send.budget)
    except asyncio.TimeoutError:
        return AttemptTimeout(exchange.send.budget or 0.0)


async def _aattempt(client: httpx.AsyncClient, exchange: Exchange) -> Outcome:
    response: httpx.Response | None = None
    reader: BodyReader | None = None
    try:
        response = await client.send(exchange.request(client), stream=True)
        try:
            reader = exchange.reader(response)
            async for chunk in exchange.araw(response):
                reader.feed(chunk)
            return exchange.reply(response, reader)
        finally:
            await response.aclose()
    except (httpx.HTTPError, httpx.StreamError, MalformedResponseError) as exc:
        return outcome_of(exc, response, reader)
