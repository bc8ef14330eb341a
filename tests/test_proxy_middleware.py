"""A deployer's middleware wraps every endpoint of the gateway, the hot chat and embeddings
paths included (they skip Starlette's stack only while no middleware is configured)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from proxy_fixtures import fake, fake_url, passthrough_config  # noqa: F401 (fixtures)
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelgate.proxy.app import create_app
from labelgate.proxy.config import parse_config
from labelgate.proxy.embedded import ServerThread

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello"}]}


class Stamp:
    """Counts the requests it sees by path and stamps every response."""

    seen: list[str]

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seen.append(scope["path"])

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-deployer", b"seen")]
            await send(message)

        await self.app(scope, receive, stamped)


@pytest.fixture(params=["constructor", "add_middleware"])
def stamped(request: pytest.FixtureRequest, fake_url: str) -> Iterator[tuple[str, list[str]]]:  # noqa: F811
    seen: list[str] = []
    config = parse_config(passthrough_config(fake_url))
    if request.param == "constructor":
        app = create_app(config, middleware=[Middleware(Stamp, seen=seen)])
    else:
        app = create_app(config)
        app.add_middleware(Stamp, seen=seen)
    server = ServerThread(app).start()
    server.wait_ready(timeout=60)
    yield server.url, seen
    server.stop()


def test_middleware_sees_the_hot_endpoints(stamped: tuple[str, list[str]]) -> None:
    url, seen = stamped
    plain = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=10)
    assert plain.status_code == 200 and plain.headers["x-deployer"] == "seen"
    with httpx.stream(
        "POST", f"{url}/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ) as streamed:
        assert streamed.headers["x-deployer"] == "seen"
        assert "data: [DONE]" in streamed.read().decode()
    models = httpx.get(f"{url}/v1/models", timeout=10)
    assert models.headers["x-deployer"] == "seen"
    assert seen[-3:] == ["/v1/chat/completions", "/chat/completions", "/v1/models"]
