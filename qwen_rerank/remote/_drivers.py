"""The only code of the remote backend that does I/O: one attempt, the send loop, the fan-out.

Sync and async each have:

- an attempt (`attempt` / `aattempt`): post one body and read the reply under the size
  cap and the attempt's budget; what went wrong is mapped once, by `outcome_of`;
- a send loop (`drive` / `adrive`) that runs the retry flow of
  [`request_flow`][qwen_rerank.remote._retry.request_flow], sleeping when it says so;
- a fan-out (`fan_out` / `afan_out`) that sends every sub-request of a
  [`Batch`][qwen_rerank.remote._bodies.Batch], at most ``max_concurrency`` at once.

Everything else (what to send, when to retry, what a reply means) lives once, in the
pure modules beside this one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx

from qwen_rerank.exceptions import MalformedResponseError
from qwen_rerank.remote._bodies import Batch, SubRequest
from qwen_rerank.remote._replies import BodyReader, Parsed
from qwen_rerank.remote._retry import AttemptTimeout, BodyBroken, Flow, Outcome, Reply, Send, Sleep
from qwen_rerank.remote._settings import Timing
from qwen_rerank.remote._transport import attempt_ends

__all__ = ["Exchange", "aattempt", "adrive", "afan_out", "attempt", "drive", "fan_out", "outcome_of"]


@dataclass(frozen=True)
class Exchange:
    """One attempt of one sub-request: everything about it that is not I/O."""

    sub: SubRequest
    send: Send
    headers: dict[str, str]
    limit: int  # most decoded bytes of the reply
    timing: Timing

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        timeout = self.timing.request_timeout(self.send.budget, client.timeout)
        return client.build_request(
            "POST", self.send.url, content=self.sub.body, headers=self.headers, timeout=timeout
        )

    def reader(self, response: httpx.Response) -> BodyReader:
        return BodyReader(self.limit, response.headers.get("content-encoding"), self.send.url)

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


def outcome_of(
    exc: httpx.HTTPError | MalformedResponseError, response: httpx.Response | None, reader: BodyReader | None
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
                for chunk in response.iter_raw():
                    reader.feed(chunk)
                    if exchange.overran(started):
                        return AttemptTimeout(budget or 0.0)
                return exchange.reply(response, reader)
            finally:
                response.close()
    except (httpx.HTTPError, MalformedResponseError) as exc:
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
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
            return exchange.reply(response, reader)
        finally:
            await response.aclose()
    except (httpx.HTTPError, MalformedResponseError) as exc:
        return outcome_of(exc, response, reader)


def drive(flow: Flow, post: Callable[[Send], Outcome]) -> Parsed:
    """Run ``flow`` to its end: post what it asks, sleep when it says."""
    try:
        action = next(flow)
        while True:
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                action = flow.send(None)
            else:
                action = flow.send(post(action))
    except StopIteration as done:
        parsed: Parsed = done.value
        return parsed
    finally:
        flow.close()


async def adrive(flow: Flow, post: Callable[[Send], Awaitable[Outcome]]) -> Parsed:
    """Async `drive`."""
    try:
        action = next(flow)
        while True:
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                action = flow.send(None)
            else:
                action = flow.send(await post(action))
    except StopIteration as done:
        parsed: Parsed = done.value
        return parsed
    finally:
        flow.close()


def fan_out(
    batch: Batch,
    send: Callable[[SubRequest], list[float]],
    pool: Callable[[], AbstractContextManager[concurrent.futures.ThreadPoolExecutor]],
) -> None:
    """Send every sub-request of ``batch``: one on this thread, more on the pool.

    The first failure fails the call, once the sub-requests not yet started are
    cancelled and those running have finished.
    """
    pending = batch.pending()
    if len(pending) == 1:
        key, sub = pending[0]
        batch.done(key, send(sub))
        return
    with pool() as executor:
        futures = {executor.submit(contextvars.copy_context().run, send, sub): key for key, sub in pending}
        try:
            for future in concurrent.futures.as_completed(futures):
                batch.done(futures[future], future.result())
        finally:
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)


async def afan_out(batch: Batch, send: Callable[[SubRequest], Awaitable[list[float]]], limit: int) -> None:
    """Async `fan_out`: tasks gated to ``limit`` in flight, all ended before it returns."""
    pending = batch.pending()
    if len(pending) == 1:
        key, sub = pending[0]
        batch.done(key, await send(sub))
        return
    gate = asyncio.Semaphore(limit)

    async def gated(key: tuple[int, int], sub: SubRequest) -> tuple[tuple[int, int], list[float]]:
        async with gate:
            return key, await send(sub)

    tasks = [asyncio.ensure_future(gated(key, sub)) for key, sub in pending]
    try:
        for next_done in asyncio.as_completed(tasks):
            batch.done(*await next_done)
    finally:
        # One failure fails the call: stop the rest, and collect their outcomes.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
