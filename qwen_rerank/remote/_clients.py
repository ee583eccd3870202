"""The lifecycle of the remote backend's connections: shared by calls, safe to close at any time.

- `Shared`: one lazily made object (an ``httpx.Client``, a thread pool) used by many
  calls at once. `Shared.close` during a call lets that call finish: the object is
  closed after its last user lets go, and the next call makes a new one.
- `LoopClients`: one ``httpx.AsyncClient`` per event loop with calls in flight (a
  client's connections belong to the loop that opened them). Each is closed when the
  last call using it ends, when its loop shuts down, or at ``close()``/``aclose()``.
- `Connections`: all of the above for one reranker, or the clients it was given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import httpx

from qwen_rerank.remote._settings import Limits, Timing
from qwen_rerank.remote._transport import bounded_client

__all__ = ["Connections", "LoopClients", "Shared"]

T = TypeVar("T")


class Shared(Generic[T]):
    """One object made on first use and shared; closed once no call uses it any more."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], None]) -> None:
        self._make, self._close = make, close
        self._current: T | None = None
        self._users: dict[int, int] = {}  # id(object) -> calls using it
        self._lock = threading.Lock()

    @property
    def current(self) -> T | None:
        return self._current

    @contextlib.contextmanager
    def use(self) -> Iterator[T]:
        with self._lock:
            if self._current is None:
                self._current = self._make()
            obj = self._current
            self._users[id(obj)] = self._users.get(id(obj), 0) + 1
        try:
            yield obj
        finally:
            with self._lock:
                left = self._users.pop(id(obj)) - 1
                if left:
                    self._users[id(obj)] = left
                retired = not left and obj is not self._current
            if retired:
                self._close(obj)

    def close(self) -> None:
        """Close the current object now, or after the calls that use it end."""
        with self._lock:
            obj, self._current = self._current, None
            idle = obj is not None and id(obj) not in self._users
        if idle and obj is not None:
            self._close(obj)


@dataclass(eq=False)
class _Entry:
    client: httpx.AsyncClient
    loop: asyncio.AbstractEventLoop
    closer: AsyncGenerator[None, None] | None = None
    users: int = 0
    retired: bool = False


class LoopClients:
    """An ``httpx.AsyncClient`` for each event loop that makes calls, closed when its calls end.

    Calls that overlap on one loop share its client and connections. When the last of them
    ends, the client is closed on the spot, within that call: a loop may be stopped and
    closed by hand (``loop.close()`` without ``shutdown_asyncgens()``) right after, and
    then nothing could close it any more.
    """

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        # Removed when its loop shuts down; an entry keeps its loop alive until then.
        self._entries: dict[asyncio.AbstractEventLoop, _Entry] = {}
        self._lock = threading.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[httpx.AsyncClient]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(loop)
            if entry is not None:
                entry.users += 1
        if entry is None:
            entry = await self._new_entry(loop)
        try:
            yield entry.client
        finally:
            with self._lock:
                entry.users -= 1
                last = entry.users == 0
                if last and self._entries.get(loop) is entry:
                    del self._entries[loop]  # the next call on this loop makes a new client
            if last:
                await self._shut(entry)

    async def _new_entry(self, loop: asyncio.AbstractEventLoop) -> _Entry:
        """The loop's entry, with one more user: its client is made in a worker thread."""
        client = await asyncio.to_thread(self._made_off_the_loop)
        with self._lock:
            entry = self._entries.get(loop)
            spare = entry is not None  # another call on this loop made one meanwhile
            if entry is None:
                entry = self._entries[loop] = _Entry(client, loop)
                # The loop closes this generator at shutdown (asyncio.run does): its finally
                # closes the client on the loop that owns its connections.
                entry.closer = self._close_at_shutdown(entry)
            entry.users += 1
        if spare:
            await client.aclose()
        elif entry.closer is not None:
            await entry.closer.asend(None)
        return entry

    def _made_off_the_loop(self) -> httpx.AsyncClient:
        """A new client, and the modules its first request and span would import on the loop."""
        from qwen_rerank._tracing import trace_api

        _load_async_backend()
        trace_api()
        return self._make()

    async def _close_at_shutdown(self, entry: _Entry) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                if self._entries.get(entry.loop) is entry:
                    del self._entries[entry.loop]
            await entry.client.aclose()

    @staticmethod
    async def _shut(entry: _Entry) -> None:
        if entry.closer is not None:
            await entry.closer.aclose()
        else:  # pragma: no cover - closed before its first use finished starting
            await entry.client.aclose()

    async def aclose_current(self) -> None:
        """Close the running loop's client now, or after its calls in flight end."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.pop(loop, None)
            if entry is None:
                return
            entry.retired = True
            idle = entry.users == 0
        if idle:
            await self._shut(entry)

    def close(self) -> None:
        """Close every loop's client on its own loop: soon if idle, else after its last call."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            for entry in entries:
                entry.retired = True
            idle = [entry for entry in entries if entry.users == 0]
        for entry in idle:
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: nothing to close on
                entry.loop.call_soon_threadsafe(self._spawn_shut, entry)

    def _spawn_shut(self, entry: _Entry) -> None:
        task = entry.loop.create_task(self._shut(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class Connections:
    """Every connection and thread one reranker uses: its own clients and pool, or injected clients.

    Args:
        timing: Its ``timeout`` is the clients' timeouts.
        limits: Its ``max_concurrency`` is how many sub-requests of one call are in flight at
            once (threads in the pool).
        http_client: An injected sync client: used as is, never closed.
        async_http_client: An injected async client: used as is, never closed.
    """

    def __init__(
        self,
        timing: Timing,
        limits: Limits,
        http_client: httpx.Client | None,
        async_http_client: httpx.AsyncClient | None,
    ) -> None:
        self.user_client, self.user_async_client = http_client, async_http_client
        timeout, max_concurrency = timing.timeout, limits.max_concurrency
        connections = max(64, max_concurrency)
        pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # One TLS context for every client made here: loading the CA bundle takes 20-100 ms, which
        # would otherwise stall the event loop at each new AsyncClient (one per loop and burst).
        verify = httpx.create_ssl_context()
        self.client = Shared(lambda: bounded_client(timeout, pool, verify), _close_client)
        self.async_clients = LoopClients(
            lambda: httpx.AsyncClient(timeout=timeout, limits=pool, verify=verify)
        )
        self.executor = Shared(
            lambda: concurrent.futures.ThreadPoolExecutor(max_concurrency, thread_name_prefix="qwen-rerank"),
            _shutdown_pool,
        )

    @contextlib.contextmanager
    def sync_client(self) -> Iterator[httpx.Client]:
        """The client a sync attempt sends with, held for the attempt."""
        if self.user_client is not None:
            yield self.user_client
            return
        with self.client.use() as client:
            yield client

    @contextlib.asynccontextmanager
    async def async_client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The running loop's client, held for the attempt."""
        if self.user_async_client is not None:
            yield self.user_async_client
            return
        async with self.async_clients.use() as client:
            yield client

    def close(self) -> None:
        """Close what this reranker opened (not injected clients); see `VLLMReranker.close`."""
        self.client.close()
        self.executor.close()
        self.async_clients.close()

    async def aclose(self) -> None:
        """Close the running loop's client now, then the rest as `close` does."""
        await self.async_clients.aclose_current()
        self.close()


@functools.cache
def _load_async_backend() -> None:
    """Import anyio's asyncio backend (httpcore's async I/O, 0.1 s) by running it once, here."""
    anyio.run(anyio.lowlevel.checkpoint, backend="asyncio")


def _close_client(client: httpx.Client) -> None:
    client.close()


def _shutdown_pool(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    pool.shutdown(wait=False)
