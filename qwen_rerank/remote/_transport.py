"""A sync transport whose every socket operation ends by the attempt's end, whatever the server sends.

httpx's sync timeouts bound each socket operation, not an attempt: a server that keeps
sending something (a stream of ``100 Continue`` interim responses, headers byte by byte,
a chunk header that never ends) resets them at every byte. Here every read, write,
connect and TLS handshake of our own sync client gets at most the time left until the
end of the attempt running on this thread (set with `attempt_ends`), and none starts
after it: the call then fails with ``httpx.ReadTimeout`` (or the phase's timeout), at
the deadline, at any layer below ours.

The async path needs none of this: its attempt runs under ``asyncio.wait_for``.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import typing
from collections.abc import Iterator

import httpcore
import httpx

__all__ = ["attempt_ends", "bound_by_attempts"]

_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar("qwen_rerank_attempt_ends", default=None)
# Writes are cut into pieces of this many bytes, so that a server reading slowly is noticed.
_WRITE_PIECE = 16384


@contextlib.contextmanager
def attempt_ends(at: float | None) -> Iterator[None]:
    """Socket operations on this thread inside the block end by ``at`` (``time.monotonic()``)."""
    token = _ENDS.set(at)
    try:
        yield
    finally:
        _ENDS.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    at = _ENDS.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the attempt's time is up")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE):
            self._inner.write(buffer[start : start + _WRITE_PIECE], _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_by_attempts(client: httpx.Client) -> httpx.Client:
    """``client``, its transports (proxies included) reading and writing through `_Backend`."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _Backend):
            pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return client
