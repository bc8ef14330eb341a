"""What a deployer's middleware costs the hot endpoints: with any middleware configured,
``/v1/chat/completions`` goes through Starlette's whole stack (error and exception
middleware, router, route, request-response wrapper) plus the middleware, instead of being
dispatched directly (proxy/app.py ``Gateway``).

In process, no network: the same gateway serving an in-process scripted model, without
middleware and with one pure-ASGI pass-through middleware, requests alternating between the
two; median per-request time and the difference. Run:
``python tests/bench/bench_gateway_stack.py [--n 3000]`` (not collected by pytest).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from labelgate.guard.models import ScriptedModel
from labelgate.proxy.app import create_app
from labelgate.proxy.config import parse_config

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


class PassThrough:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _client(middleware: list[Middleware]) -> httpx.AsyncClient:
    config = parse_config(
        {"model_list": [{"model_name": "bench", "litellm_params": {"model": "bench"}}]}
    )
    model = ScriptedModel(["ok"], cycle=True, name="bench")
    app = create_app(config, models={"bench": model}, middleware=middleware)
    app.state.proxy.ready = True  # no lifespan under ASGITransport; nothing to warm up
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")  # keyless: loopback


async def _one(client: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=BODY)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


async def main(n: int) -> None:
    clients = {"direct": _client([]), "middleware": _client([Middleware(PassThrough)])}
    times: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():  # warm up
        for _ in range(50):
            await _one(client)
    for i in range(n):
        for name in clients if i % 2 == 0 else reversed(clients):
            times[name].append(await _one(clients[name]))
    print(f"{n} requests each, alternating, load average {os.getloadavg()[0]:.2f}")
    medians = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:12} median {median:8.1f} us per request")
    print(f"full stack + middleware adds {medians['middleware'] - medians['direct']:+.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    asyncio.run(main(parser.parse_args().n))
