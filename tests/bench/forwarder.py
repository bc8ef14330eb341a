"""The floor for ``bench_proxy.py``: the least an HTTP hop in Python can add on this machine.

A raw ASGI app under uvicorn (as ``labelgate serve``), forwarding to the upstream with the
proxy's own HTTP client (``proxy.httppool``) and nothing else: no validation, no parsing of
answers, no guard, no record. One rule of the gateway is kept, because it decides when the
first token can leave: a stream is answered only once the upstream's first event has come, so
that an upstream failing before it still gets its own status code (the gateway's retries and
fallbacks apply until then). Not a product: a reference measured side by side.

Run: ``python tests/bench/forwarder.py UPSTREAM_BASE_URL PORT``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import uvicorn

from labelgate.proxy.httppool import Endpoint, HttpPool, Response, request_head

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Forwarder:
    def __init__(self, upstream: str) -> None:
        self._pool = HttpPool()
        self._endpoint = Endpoint.parse(upstream.rstrip("/") + "/v1/chat/completions")
        self._head = request_head(self._endpoint, {"content-type": "application/json"})

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":  # readiness
            await _answer(send, 200, b"{}", b"application/json")
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not orjson.loads(body).get("stream"):
            status, raw = await self._pool.post(self._endpoint, self._head, body, 30)
            await _answer(send, status, raw, b"application/json")
            return
        response = await self._pool.open(self._endpoint, self._head, body, 30)
        try:
            await _stream(send, response)
        finally:
            response.release()


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, response: Response) -> None:
    pieces: AsyncIterator[bytes] = response.pieces(30)
    first = b""
    async for piece in pieces:  # up to the end of the first event
        first += piece
        if b"\n\n" in first:
            break
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": first, "more_body": True})
    async for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


if __name__ == "__main__":
    app = Forwarder(sys.argv[1])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
