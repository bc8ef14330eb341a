"""The upstream HTTP client against scripted servers on loopback: keep-alive, the shapes of
a body, the keep-alive race, failures, streaming, limits and TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from labelgate.proxy.httppool import (
    Endpoint,
    HttpPool,
    TransportError,
    _Connection,
    request_head,
)

Reply = Callable[["Exchange"], Awaitable[None]]


@dataclass
class Exchange:
    """One request as the server read it, and the stream to answer on."""

    head: bytes
    body: bytes
    writer: asyncio.StreamWriter
    connection: int  # which connection (1, 2, ...) it came on

    async def answer(self, status: int, body: bytes, *headers: str) -> None:
        lines = [f"HTTP/1.1 {status} X", *headers]
        if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
            lines.append(f"content-length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()


@dataclass
class Server:
    port: int
    exchanges: list[Exchange] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0

    def endpoint(self, path: str = "/v1/chat/completions", scheme: str = "http") -> Endpoint:
        return Endpoint.parse(f"{scheme}://localhost:{self.port}{path}")


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


@asynccontextmanager
async def serving(reply: Reply, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """A server answering each request with ``reply``; it closes a connection when ``reply``
    closes its writer."""
    server = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open_now += 1
        server.most_open = max(server.most_open, server.open_now)
        number = server.connections
        try:
            while not writer.is_closing():
                try:
                    head, body = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                exchange = Exchange(head, body, writer, number)
                server.exchanges.append(exchange)
                await reply(exchange)
        finally:
            server.open_now -= 1
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    client = HttpPool()
    yield client
    await client.aclose()


async def echo(exchange: Exchange) -> None:
    await exchange.answer(200, b'{"echo": ' + exchange.body + b"}")


def _head(server: Server, **headers: str) -> bytes:
    return request_head(server.endpoint(), {"content-type": "application/json", **headers})


async def test_posts_in_a_row_share_one_connection_and_send_the_head(pool: HttpPool) -> None:
    async with serving(echo) as server:
        for i in range(5):
            status, body = await pool.post(
                server.endpoint(), _head(server, authorization="Bearer k"), b"%d" % i, 5
            )
            assert (status, body) == (200, b'{"echo": %d}' % i)
        head = server.exchanges[0].head.decode().lower()
    assert server.connections == 1
    assert head.startswith("post /v1/chat/completions http/1.1\r\n")
    assert f"host: localhost:{server.port}\r\n" in head
    assert "authorization: bearer k\r\n" in head
    assert "content-length: 1\r\n" in head
    assert "accept-encoding: identity\r\n" in head


@pytest.mark.parametrize(
    ("headers", "raw", "expected"),
    [
        (("transfer-encoding: chunked",), b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
        (("content-encoding: gzip",), gzip.compress(b"zipped"), b"zipped"),
        (("connection: close", "content-length: 5"), b"plain", b"plain"),
    ],
)
async def test_bodies_are_decoded(
    headers: tuple[str, ...], raw: bytes, expected: bytes, pool: HttpPool
) -> None:
    async def reply(exchange: Exchange) -> None:
        await exchange.answer(200, raw, *headers)

    async with serving(reply) as server:
        for _ in range(2):  # the second one after the first's connection is settled
            assert await pool.post(server.endpoint(), _head(server), b"{}", 5) == (200, expected)


@pytest.mark.parametrize(
    ("encoding", "raw", "error"),
    [
        ("gzip", b"not gzip at all", "corrupt compressed body"),
        ("br", b"\x0b\x02\x80hello\x03", "unsupported encoding"),
    ],
)
async def test_a_body_that_cannot_be_decoded_is_a_transport_error(
    encoding: str, raw: bytes, error: str, pool: HttpPool
) -> None:
    async def reply(exchange: Exchange) -> None:
        await exchange.answer(200, raw, f"content-encoding: {encoding}")

    async with serving(reply) as server:
        with pytest.raises(TransportError, match=error):
            await pool.post(server.endpoint(), _head(server), b"{}", 5)


async def test_a_body_without_length_ends_with_its_connection(pool: HttpPool) -> None:
    async def reply(exchange: Exchange) -> None:
        exchange.writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        exchange.writer.close()

    async with serving(reply) as server:
        assert await pool.post(server.endpoint(), _head(server), b"{}", 5) == (
            200,
            b"until the end",
        )
        assert await pool.post(server.endpoint(), _head(server), b"{}", 5) == (
            200,
            b"until the end",
        )
    assert server.connections == 2


async def test_a_connection_the_server_dropped_unanswered_is_replaced_once(pool: HttpPool) -> None:
    """The keep-alive race: the server closes an idle connection as the next request goes."""

    async def reply(exchange: Exchange) -> None:
        if exchange.connection == 1 and len(server.exchanges) == 2:
            exchange.writer.close()  # the second request on the first connection: dropped
            return
        await echo(exchange)

    async with serving(reply) as server:
        assert (await pool.post(server.endpoint(), _head(server), b"1", 5))[0] == 200
        assert await pool.post(server.endpoint(), _head(server), b"2", 5) == (200, b'{"echo": 2}')
    assert server.connections == 2


async def test_a_new_connection_dropped_unanswered_fails(pool: HttpPool) -> None:
    async def reply(exchange: Exchange) -> None:
        exchange.writer.close()

    async with serving(reply) as server:
        with pytest.raises(TransportError, match="closed the connection"):
            await pool.post(server.endpoint(), _head(server), b"{}", 5)
    assert server.connections == 1  # not sent twice


async def test_a_half_sent_answer_fails_and_is_not_retried(pool: HttpPool) -> None:
    async def reply(exchange: Exchange) -> None:
        exchange.writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
        exchange.writer.close()

    async with serving(reply) as server:
        with pytest.raises(TransportError):
            await pool.post(server.endpoint(), _head(server), b"{}", 5)
    assert server.connections == 1


async def test_malformed_http_is_a_transport_error(pool: HttpPool) -> None:
    async def reply(exchange: Exchange) -> None:
        exchange.writer.write(b"SMTP ready\r\n\r\n")

    async with serving(reply) as server:
        with pytest.raises(TransportError, match="malformed HTTP"):
            await pool.post(server.endpoint(), _head(server), b"{}", 5)


async def test_nothing_listening_is_a_transport_error() -> None:
    async with serving(echo) as server:
        endpoint = server.endpoint()
    with pytest.raises(TransportError, match="cannot connect"):
        await HttpPool().post(endpoint, _head(server), b"{}", 5)


async def test_a_timeout_closes_the_connection_and_the_next_call_opens_one(pool: HttpPool) -> None:
    async def reply(exchange: Exchange) -> None:
        if len(server.exchanges) == 1:
            await asyncio.sleep(10)  # never answered in time
        else:
            await echo(exchange)

    async with serving(reply) as server:
        with pytest.raises(TimeoutError):
            await pool.post(server.endpoint(), _head(server), b"1", 0.2)
        assert await pool.post(server.endpoint(), _head(server), b"2", 5) == (200, b'{"echo": 2}')
    assert server.connections == 2


async def test_a_stream_comes_piece_by_piece_and_an_unfinished_one_is_not_reused(
    pool: HttpPool,
) -> None:
    go_on = asyncio.Event()

    async def reply(exchange: Exchange) -> None:
        if exchange.connection > 1:
            return await echo(exchange)
        exchange.writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        exchange.writer.write(b"5\r\nfirst\r\n")
        await exchange.writer.drain()
        await go_on.wait()
        exchange.writer.write(b"6\r\nsecond\r\n")
        await exchange.writer.drain()
        await asyncio.sleep(10)  # never finishes

    async with serving(reply) as server:
        response = await pool.open(server.endpoint(), _head(server), b"{}", 5)
        pieces = response.pieces(timeout=0.3)
        assert response.status == 200
        assert await anext(pieces) == b"first"
        go_on.set()
        assert await anext(pieces) == b"second"
        with pytest.raises(TimeoutError):  # a stalled stream
            await anext(pieces)
        response.release()
        response.release()  # once only
        assert (await pool.post(server.endpoint(), _head(server), b"3", 5))[1] == b'{"echo": 3}'
    assert server.connections == 2


async def test_a_large_stream_read_slowly_arrives_whole(pool: HttpPool) -> None:
    blob = bytes(range(256)) * 16384  # 4 MiB, past the point where reading pauses

    async def reply(exchange: Exchange) -> None:
        await exchange.answer(200, blob)

    async with serving(reply) as server:
        response = await pool.open(server.endpoint(), _head(server), b"{}", 5)
        got = bytearray()
        async for piece in response.pieces(timeout=5):
            got += piece
            await asyncio.sleep(0.005)
        response.release()
        assert bytes(got) == blob
        assert (await pool.post(server.endpoint(), _head(server), b"{}", 5))[1] == blob
    assert server.connections == 1


async def test_no_more_connections_than_the_limit() -> None:
    async def reply(exchange: Exchange) -> None:
        await asyncio.sleep(0.05)
        await echo(exchange)

    pool = HttpPool(max_connections=2)
    async with serving(reply) as server:
        answers = await asyncio.gather(
            *(pool.post(server.endpoint(), _head(server), b"%d" % i, 5) for i in range(6))
        )
    assert [a[1] for a in answers] == [b'{"echo": %d}' % i for i in range(6)]
    assert server.most_open <= 2
    await pool.aclose()


async def test_https_with_the_given_authorities() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with serving(echo, tls=server_tls) as server:
        endpoint = server.endpoint(scheme="https")
        head = request_head(endpoint, {})
        assert await HttpPool(tls=client_tls).post(endpoint, head, b"1", 5) == (
            200,
            b'{"echo": 1}',
        )
        with pytest.raises(TransportError, match="cannot connect"):  # not trusted by default
            await HttpPool().post(endpoint, head, b"1", 5)


def test_endpoints_parse_urls() -> None:
    e = Endpoint.parse("https://api.example.com/v1")
    assert (e.scheme, e.host, e.port, e.path) == ("https", "api.example.com", 443, "/v1")
    assert e.join("/chat/completions").path == "/v1/chat/completions"
    assert e.host_header == "api.example.com"
    assert Endpoint.parse("http://[::1]:8080").host_header == "[::1]:8080"
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.parse("ftp://example.com")


async def test_a_connection_idle_too_long_is_not_reused() -> None:
    pool = HttpPool(idle_seconds=0.05)
    async with serving(echo) as server:
        await pool.post(server.endpoint(), _head(server), b"1", 5)
        await pool.post(server.endpoint(), _head(server), b"2", 5)  # at once: reused
        await asyncio.sleep(0.1)
        await pool.post(server.endpoint(), _head(server), b"3", 5)  # idle 0.1 s: a new one
    assert server.connections == 2
    await pool.aclose()


@pytest.mark.parametrize("more", [b"", b"x" * 70000], ids=["end only", "too much more"])
async def test_a_stream_released_finished_is_kept_once_its_end_comes(
    more: bytes, pool: HttpPool
) -> None:
    """An event stream's reader stops at [DONE]; the chunked body's end may come in a later
    read. Released ``finished``, the connection reads it and goes back to the pool; one that
    keeps sending instead is closed."""
    go_on = asyncio.Event()

    async def reply(exchange: Exchange) -> None:
        if len(server.exchanges) > 1:
            return await echo(exchange)
        exchange.writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        exchange.writer.write(b"e\r\ndata: [DONE]\n\n\r\n")
        await exchange.writer.drain()
        await go_on.wait()
        if more:
            exchange.writer.write(b"%x\r\n%s\r\n" % (len(more), more))
        exchange.writer.write(b"0\r\n\r\n")
        await exchange.writer.drain()

    settled = asyncio.Event()
    park, close = pool.park, _Connection.close

    def parked(conn: _Connection) -> None:
        park(conn)
        settled.set()

    def closed(conn: _Connection) -> None:
        close(conn)
        settled.set()

    pool.park = parked  # type: ignore[method-assign]
    async with serving(reply) as server:
        response = await pool.open(server.endpoint(), _head(server), b"{}", 5)
        assert await anext(response.pieces()) == b"data: [DONE]\n\n"
        response.release(finished=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_Connection, "close", closed)
            go_on.set()
            await settled.wait()
        assert (await pool.post(server.endpoint(), _head(server), b"2", 5))[1] == b'{"echo": 2}'
    assert server.connections == (2 if more else 1)
