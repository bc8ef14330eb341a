"""A pooled HTTP/1.1 client for the pass-through upstreams, on asyncio and ``httptools``.

Why not aiohttp: the proxy's hop is two HTTP exchanges per request, and aiohttp's client spent
about 0.4 ms of CPU per POST on this project's bench machine where this one spends about
0.17 ms (side by side in ``docs/performance.md``). What it does not need makes the
difference: no cookie jar, redirects, URL parsing, trace signals or multidicts per request.
Parsing is ``httptools`` (llhttp, the parser uvicorn uses); this module only keeps
connections and hands bytes over.

What it does:
- keep-alive connections per origin (``http`` and ``https``), the most recent reused first,
  at most ``max_connections`` exchanges at once, idle ones dropped after ``idle_seconds``;
- one POST with a bytes body; the answer whole (``post``) or as it arrives (``open``, one
  piece per network read, reading paused while the reader is far behind);
- content-length, chunked and until-close bodies; gzip and deflate when an upstream
  compresses although asked not to;
- a request on a reused connection that the server had closed before answering anything is
  sent once more on a new connection: it was never read (the keep-alive race);
- failures are ``TimeoutError`` or ``TransportError``, and a connection that failed, timed
  out or was abandoned mid-answer is closed, never reused;
- a stream whose reader has all it needs (an event stream's ``[DONE]``) before the body's
  end arrived (a chunked body's last chunk often comes in a read of its own) is released
  ``finished``: the connection reads that end in the background (what else comes, up to
  ``_FINISH_BYTES``, is dropped) and goes back to the pool, instead of being closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

# Reading stops while this much of a streamed answer waits for its reader.
_HIGH_WATER = 1 << 20
# A stream released finished may read this much more before its end, else it is closed.
_FINISH_BYTES = 1 << 16
_DECODERS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": 0}


class TransportError(Exception):
    """The upstream could not be reached, or broke the exchange (closed it, spoke bad HTTP)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where POSTs go: an origin and a path, parsed once from the configured URL."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path or "/")

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def join(self, path: str) -> Endpoint:
        return Endpoint(self.scheme, self.host, self.port, self.path.rstrip("/") + path)


def request_head(endpoint: Endpoint, headers: dict[str, str]) -> bytes:
    """The request line and fixed headers of a POST to ``endpoint``, up to the length."""
    lines = [f"POST {endpoint.path} HTTP/1.1", f"host: {endpoint.host_header}"]
    fixed = {"accept-encoding": "identity", "user-agent": "labelgate", **headers}
    lines += [f"{name}: {value}" for name, value in fixed.items()]
    return ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")


class Response:
    """An answer's status and headers; its body whole (``read``) or as it comes (``pieces``)."""

    def __init__(self, conn: _Connection, pool: HttpPool) -> None:
        self._conn = conn
        self._pool: HttpPool | None = pool
        self.status = conn.status
        self.headers = conn.headers

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    async def pieces(self, timeout: float | None = None) -> AsyncIterator[bytes]:
        """The body, one piece per network read; ``timeout`` bounds the wait for each."""
        conn = self._conn
        while True:
            piece = await conn.next_piece(timeout)
            if piece is None:
                return
            yield piece

    def release(self, finished: bool = False) -> None:
        """Back to the pool when the answer was read to its end, else closed (once).
        ``finished``: the reader needs nothing more; the body's end may still come, and the
        connection goes back to the pool then."""
        if self._pool is not None:
            self._pool.release(self._conn, finished)
            self._pool = None

    async def aclose(self, finished: bool = False) -> None:
        self.release(finished)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.answered = False  # any byte of the answer arrived
        self.complete = False
        self._keep_alive = False
        self._until_close = False
        self._decoder: zlib._Decompress | None = None
        self._head: asyncio.Future[None] | None = None
        self._pieces: list[bytes] = []
        self._ready: list[bytes] = []  # read off the wire, not yet taken by the reader
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._paused = False
        self._finishing: HttpPool | None = None  # released finished: parked once complete
        self._dropped = 0

    # ----------------------------------------------------------------- exchange

    def send(self, head: bytes, body: bytes) -> asyncio.Future[None]:
        """Write the request; the future resolves when the answer's headers are in."""
        assert self.transport is not None
        self._reset()
        self._head = asyncio.get_running_loop().create_future()
        self.transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        return self._head

    async def next_piece(self, timeout: float | None) -> bytes | None:
        while not self._ready:
            if self._error is not None:  # first: an answer can complete and still be broken
                raise self._error
            if self.complete:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            if timeout is None:  # a stream's reader bounds its own waits (no timer per piece)
                await self._waiter
                continue
            async with asyncio.timeout(timeout):
                await self._waiter
        piece = b"".join(self._ready) if len(self._ready) > 1 else self._ready[0]
        self._ready.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ----------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"upstream sent malformed HTTP: {exc}"))
            self.close()
            return
        self._hand_over()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and not self.complete:
            self.on_message_complete()  # an answer without a length ends with its connection
            self._hand_over()
        elif not self.complete:
            reason = f": {exc!r}" if exc else ""
            self._fail(TransportError(f"upstream closed the connection{reason}"))

    # ----------------------------------------------------------------- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()  # not known after the message
        names = {name for name, _ in self.headers}
        bodiless = self.status in (204, 304) or 100 <= self.status < 200
        self._until_close = not bodiless and not names & {b"content-length", b"transfer-encoding"}
        encoding = self.header(b"content-encoding")
        if encoding and encoding.lower() in _DECODERS:
            self._decoder = zlib.decompressobj(_DECODERS[encoding.lower()])
        elif encoding and encoding.lower() != b"identity":
            self._fail(TransportError(f"upstream used an unsupported encoding: {encoding!r}"))
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(TransportError(f"upstream sent a corrupt compressed body: {exc}"))
                return
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        if self._decoder is not None:
            self._pieces.append(self._decoder.flush())
        self.complete = True

    # ----------------------------------------------------------------- internals

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    def finish_into(self, pool: HttpPool) -> None:
        """Read up to the body's end in the background, dropping it, then be parked."""
        self._finishing = pool
        self._hand_over()

    def _hand_over(self) -> None:
        """What this read brought, to the reader as one piece."""
        if self._finishing is not None:
            self._dropped += sum(map(len, self._pieces)) + self._buffered
            self._pieces.clear()
            self._ready.clear()
            self._buffered = 0
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            if self._error is not None or self._dropped > _FINISH_BYTES:
                self.close()
            elif self.complete:
                pool, self._finishing = self._finishing, None
                pool.park(self)
            return
        if self._pieces:
            piece = b"".join(self._pieces)
            self._pieces.clear()
            if piece:
                self._ready.append(piece)
                self._buffered += len(piece)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class HttpPool:
    """Keep-alive connections to every pass-through upstream, shared by all requests."""

    def __init__(
        self,
        max_connections: int = 512,
        idle_seconds: float = 15.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._finishing: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle_seconds = idle_seconds
        self._ssl = tls  # None: the system's trusted authorities, on first https use

    async def post(
        self, endpoint: Endpoint, head: bytes, body: bytes, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """POST and read the whole answer, all within ``timeout`` seconds (None: the caller
        bounds it)."""
        async with asyncio.timeout(timeout):
            response = await self._open(endpoint, head, body)
            try:
                return response.status, await response.read()
            finally:
                response.release()

    async def open(
        self, endpoint: Endpoint, head: bytes, body: bytes, timeout: float | None = None
    ) -> Response:
        """POST and wait for the answer's headers, within ``timeout`` seconds (None: the
        caller bounds it); the caller reads the body (``pieces`` bounds each wait) and must
        ``release`` the response."""
        async with asyncio.timeout(timeout):
            return await self._open(endpoint, head, body)

    async def _open(self, endpoint: Endpoint, head: bytes, body: bytes) -> Response:
        await self._slots.acquire()
        try:
            conn = await self._exchange(endpoint, head, body)
        except BaseException:
            self._slots.release()
            raise
        return Response(conn, self)

    async def _exchange(self, endpoint: Endpoint, head: bytes, body: bytes) -> _Connection:
        conn = self._reused(endpoint.origin)
        if conn is not None:
            try:
                await _answered(conn, head, body)
                return conn
            except TransportError:
                if conn.answered:
                    raise
                # Closed by the server before it read a byte of ours: send on a new one.
        conn = await self._connect(endpoint)
        await _answered(conn, head, body)
        return conn

    def _reused(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        return None

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls() if endpoint.scheme == "https" else None
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(endpoint.origin),
                endpoint.host,
                endpoint.port,
                ssl=tls,
                server_hostname=endpoint.host if tls else None,
            )
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise TransportError(
                f"cannot connect to {endpoint.host_header}: {exc.strerror or exc!r}"
            ) from None
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def release(self, conn: _Connection, finished: bool = False) -> None:
        self._slots.release()
        if conn.reusable:
            self.park(conn)
        elif finished and not conn.closed and not conn.complete:
            self._finishing.add(conn)
            conn.finish_into(self)
        else:
            conn.close()

    def park(self, conn: _Connection) -> None:
        """An idle connection, ready for the next exchange (closed if it cannot be)."""
        self._finishing.discard(conn)
        if not conn.reusable:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._finishing):
            conn.close()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)  # let the transports finish closing


async def _answered(conn: _Connection, head: bytes, body: bytes) -> None:
    """Send on ``conn`` and wait for the answer's headers; a failed exchange closes it."""
    try:
        await conn.send(head, body)
    except BaseException:
        conn.close()
        raise
