"""A sync transport whose every socket operation ends by the attempt's end, whatever the server sends.

httpx's sync timeouts bound each socket operation, not an attempt: a server that keeps
sending something (a stream of ``100 Continue`` interim responses, headers byte by byte,
a chunk header that never ends) resets them at every byte. Here every read, write,
connect and TLS handshake of our own sync client gets at most the time left until the
end of the attempt running on this thread (set with `attempt_ends`), and none starts
after it: the call then fails with ``httpx.ReadTimeout`` (or the phase's timeout), at
the deadline, at any layer below ours.

It takes public API only: [`AttemptTransport`][qwen_rerank.remote._transport.AttemptTransport]
is an ``httpx.BaseTransport`` over an ``httpcore.ConnectionPool`` given our network
backend, and `bounded_client` mounts one per proxy that the environment names, as an
``httpx.Client`` does with ``trust_env``.

The async path needs none of this: its attempt runs under ``asyncio.wait_for``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import ipaddress
import ssl
import time
import typing
import urllib.request
from collections.abc import Iterator

import httpcore
import httpx

__all__ = ["AttemptTransport", "attempt_ends", "bounded_client", "environment_proxies"]

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


# httpcore's errors and the httpx errors they stand for (httpx's own table is private).
_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Raise an httpcore error as the most specific httpx error for it, with the same message."""
    try:
        yield
    except Exception as exc:
        kind = next((_HTTPX_ERRORS[k] for k in type(exc).__mro__ if k in _HTTPX_ERRORS), None)
        if kind is None:
            raise
        raise kind(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    """A response body read from httpcore, its errors raised as httpx's."""

    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class AttemptTransport(httpx.BaseTransport):
    """HTTP/1.1 over a pool of our own connections, each bounded by the attempt's end.

    Args:
        limits: Connections kept and opened at most, and how long idle ones are kept.
        ssl_context: Verifies the servers (and an ``https`` proxy's target servers).
        proxy: Every request goes through this proxy; ``None``: straight to the server.
    """

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext, proxy: httpx.Proxy | None = None):
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            proxy=None if proxy is None else _core_proxy(proxy),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(httpcore.SyncBackend()),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):  # pragma: no cover - httpx sends one
            raise TypeError("a sync transport needs a sync request body")
        sent = httpcore.Request(
            method=request.method,
            url=_core_url(request.url),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(sent)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def _core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


def _core_proxy(proxy: httpx.Proxy) -> httpcore.Proxy:
    if proxy.url.scheme in ("socks5", "socks5h") and importlib.util.find_spec("socksio") is None:
        raise ImportError(
            "Using SOCKS proxy, but the 'socksio' package is not installed. "
            "Make sure to install httpx using `pip install httpx[socks]`."
        )
    return httpcore.Proxy(
        url=_core_url(proxy.url),
        auth=proxy.raw_auth,
        headers=proxy.headers.raw,
        ssl_context=proxy.ssl_context,
    )


def environment_proxies() -> dict[str, str | None]:
    """The proxies the environment names, by URL pattern (``None``: no proxy), as httpx reads them.

    ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` (or what the OS sets) give the proxy
    of ``http://``, ``https://`` and ``all://`` URLs; each host of ``NO_PROXY`` is reached
    directly (a bare name also covers its subdomains), and ``NO_PROXY=*`` turns proxies off.
    """
    found = urllib.request.getproxies()
    bypassed = [host.strip() for host in found.get("no", "").split(",")]
    if "*" in bypassed:
        return {}
    patterns: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        url = found.get(scheme)
        if url:
            patterns[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in filter(None, bypassed):
        patterns[_direct_pattern(host)] = None
    return patterns


def _direct_pattern(host: str) -> str:
    """The URL pattern of a ``NO_PROXY`` entry."""
    if "://" in host:
        return host
    if _is_address(host, ipaddress.IPv4Address) or host.lower() == "localhost":
        return f"all://{host}"
    if _is_address(host, ipaddress.IPv6Address):
        return f"all://[{host}]"
    return f"all://*{host}"


def _is_address(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(host.split("/")[0])
    except ValueError:
        return False
    return True


def bounded_client(timeout: httpx.Timeout, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> httpx.Client:
    """A sync client whose connections, direct or through a proxy, end by the attempt's end.

    The environment's proxies are read now (see `environment_proxies`), as ``httpx.Client``
    reads them when it is made.
    """
    mounts: dict[str, httpx.BaseTransport | None] = {
        pattern: None if url is None else AttemptTransport(limits, ssl_context, httpx.Proxy(url))
        for pattern, url in environment_proxies().items()
    }
    return httpx.Client(timeout=timeout, transport=AttemptTransport(limits, ssl_context), mounts=mounts)
