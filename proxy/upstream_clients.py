"""The HTTP clients of the pass-through upstreams, chosen per endpoint at start.

- **Direct** (no proxy applies): the hand-written pool (``httppool``, asyncio + httptools),
  one per TLS setting (the connections of two client certificates are never shared). Side by
  side with httpx's transport on the same machine it spent 0.04 against 0.33 ms of CPU per
  non-streamed POST and 0.55 against 1.0 ms per streamed answer read to its end
  (``tests/bench/bench_upstream_client.py``, figures in ``docs/performance.md``).
- **Through a proxy**: httpx's transport (``httpx.AsyncHTTPTransport``, called directly: no
  cookie jar, which must not carry one caller's cookies to another's request, and no
  redirects), which forwards ``http`` requests to the proxy, tunnels ``https`` with
  ``CONNECT``, authenticates with the proxy URL's credentials, and speaks SOCKS with
  ``socksio`` installed.

Which proxy applies is read from the environment once, at start, the way ``urllib`` (and
httpx's ``trust_env``) read it: ``HTTP_PROXY`` / ``HTTPS_PROXY`` by the upstream's scheme, else
``ALL_PROXY``, lower-case names first, none for a host that ``NO_PROXY`` matches (``*``, a host,
a domain and its subdomains, optionally ``:port``).

Both kinds answer through ``Channel``: failures are ``TransportError``, timeouts are the
caller's (the router bounds every call), the TLS context is the same ``ssl.SSLContext``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.request
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from labelgate.proxy.config import ConfigError
from labelgate.proxy.httppool import (
    _FINISH_BYTES,
    Endpoint,
    HttpPool,
    Response,
    TransportError,
    request_head,
)
from labelgate.proxy.tls import TlsError, TlsSettings, tls_context

log = logging.getLogger("labelgate.proxy")

_FIXED = {"accept-encoding": "identity", "user-agent": "labelgate"}


class Answer(Protocol):
    """An answer whose body is read as it comes; ``aclose`` it once done with."""

    status: int

    async def read(self) -> bytes: ...

    def pieces(self) -> AsyncIterator[bytes]: ...

    async def aclose(self, finished: bool = False) -> None:
        """Done with the answer; ``finished``: its reader has all it needs (``[DONE]``), so
        the rest of the body, if any, is read in the background and the connection kept."""


class Channel(Protocol):
    """POSTs to one upstream's paths."""

    route: str  # how requests go: "direct" or "proxy http://host:port"

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def open(self, path: str, body: bytes) -> Answer: ...


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment gives for ``url``, or None (direct)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    if urllib.request.proxy_bypass_environment(where, proxies):  # type: ignore[attr-defined]
        return None  # (in urllib.request since Python 3.0, missing from its type stubs)
    return proxy if "://" in proxy else f"http://{proxy}"


def _shown(proxy: str) -> str:
    """A proxy URL without its credentials, for logs and errors."""
    parts = urlsplit(proxy)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, "", "", ""))


class _PoolChannel:
    route = "direct"

    def __init__(self, pool: HttpPool, base: Endpoint, headers: dict[str, str]) -> None:
        self._pool = pool
        self._base = base
        self._headers = headers
        self._routes: dict[str, tuple[Endpoint, bytes]] = {}

    def _route(self, path: str) -> tuple[Endpoint, bytes]:
        route = self._routes.get(path)
        if route is None:
            endpoint = self._base.join(path)
            route = self._routes[path] = (endpoint, request_head(endpoint, self._headers))
        return route

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        endpoint, head = self._route(path)
        return await self._pool.post(endpoint, head, body)

    async def open(self, path: str, body: bytes) -> Response:
        endpoint, head = self._route(path)
        return await self._pool.open(endpoint, head, body)


class _HttpxAnswer:
    def __init__(
        self, response: httpx.Response, where: str, finishing: set[asyncio.Task[None]]
    ) -> None:
        self._response = response
        self._where = where
        self._finishing = finishing
        self._iterator: AsyncIterator[bytes] | None = None
        self.status = response.status_code

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._where) from None

    def pieces(self) -> AsyncIterator[bytes]:
        self._iterator = self._pieces()
        return self._iterator

    async def _pieces(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.aiter_bytes():
                yield piece
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._where) from None

    async def aclose(self, finished: bool = False) -> None:
        if finished and self._iterator is not None:
            task = asyncio.get_running_loop().create_task(self._finish(self._iterator))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
            return
        await self._response.aclose()

    async def _finish(self, rest: AsyncIterator[bytes]) -> None:
        """The body's end, read so that httpx keeps the connection (a chunked body's last
        chunk often comes after the reader stopped at ``[DONE]``): at most ``_FINISH_BYTES``
        more, for at most 15 s, else the connection is closed."""
        with contextlib.suppress(TransportError, TimeoutError):
            async with asyncio.timeout(15):
                dropped = 0
                async for piece in rest:
                    dropped += len(piece)
                    if dropped > _FINISH_BYTES:
                        break
        await self._response.aclose()


def _transport_error(exc: httpx.HTTPError, where: str) -> TransportError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ProxyError):
        return TransportError(f"the proxy refused or failed ({where}): {detail}")
    if isinstance(exc, httpx.ConnectError):
        return TransportError(f"cannot connect ({where}): {detail}")
    return TransportError(f"{detail} ({where})")


class _HttpxChannel:
    def __init__(
        self,
        transport: httpx.AsyncHTTPTransport,
        proxy: str,
        base: str,
        headers: dict[str, str],
        finishing: set[asyncio.Task[None]],
    ) -> None:
        self._transport = transport
        self._finishing = finishing
        self._base = base.rstrip("/")
        self._headers = {**_FIXED, **headers}
        self.route = f"proxy {_shown(proxy)}"

    async def _send(self, path: str, body: bytes) -> httpx.Response:
        request = httpx.Request("POST", self._base + path, headers=self._headers, content=body)
        try:
            return await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, f"through {self.route}") from None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        answer = await self.open(path, body)
        try:
            return answer.status, await answer.read()
        finally:
            await answer.aclose()

    async def open(self, path: str, body: bytes) -> _HttpxAnswer:
        response = await self._send(path, body)
        return _HttpxAnswer(response, f"through {self.route}", self._finishing)


class UpstreamClients:
    """Every pass-through upstream's client, shared by all requests: a pool per TLS setting
    for the direct ones, an httpx transport per proxy and TLS setting for the others."""

    def __init__(self, max_connections: int = 512, idle_seconds: float = 15.0) -> None:
        self._max_connections = max_connections
        self._idle_seconds = idle_seconds
        self._pools: dict[object, HttpPool] = {}
        self._transports: dict[object, httpx.AsyncHTTPTransport] = {}
        self._finishing: set[asyncio.Task[None]] = set()  # answers read to their end

    def channel(
        self, api_base: str, headers: dict[str, str], tls: TlsSettings | None = None
    ) -> Channel:
        """The way to ``api_base`` (raises ``ConfigError`` with a readable line when its TLS
        settings or the environment's proxy cannot be used)."""
        try:
            return self._channel(api_base, headers, tls)
        except TlsError as exc:
            raise ConfigError(f"upstream {api_base}: {exc.field}: {exc.message}") from None

    def _channel(self, api_base: str, headers: dict[str, str], tls: TlsSettings | None) -> Channel:
        base = Endpoint.parse(api_base)
        tls = tls or TlsSettings()
        https = base.scheme == "https"
        proxy = proxy_for(api_base)
        key = (tls, tls.environment()) if https else None
        if proxy is None:
            pool = self._pools.get(key)
            if pool is None:
                context = tls_context(tls) if https else None
                pool = HttpPool(self._max_connections, self._idle_seconds, context)
                self._pools[key] = pool
            return _PoolChannel(pool, base, headers)
        transport = self._transports.get((proxy, key))
        if transport is None:
            verify = tls_context(tls) if https else True
            limits = httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
                keepalive_expiry=self._idle_seconds,
            )
            try:
                transport = httpx.AsyncHTTPTransport(
                    verify=verify, proxy=httpx.Proxy(proxy), limits=limits, trust_env=False
                )
            except (ValueError, ImportError) as exc:  # bad URL, socks without socksio
                raise ConfigError(
                    f"upstream {api_base}: cannot use the proxy {_shown(proxy)}: {exc}"
                ) from None
            self._transports[(proxy, key)] = transport
        log.info("upstream %s goes through the proxy %s", api_base, _shown(proxy))
        return _HttpxChannel(transport, proxy, api_base, headers, self._finishing)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        for task in list(self._finishing):
            task.cancel()
        for transport in self._transports.values():
            await transport.aclose()
