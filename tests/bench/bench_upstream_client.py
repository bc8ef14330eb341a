"""The gateway's upstream HTTP clients side by side: the hand-written pool and httpx.

One fake upstream (``tests/fakes``, uvicorn, its own process) on loopback; in this process,
on uvloop as under ``labelgate serve``, one client of each kind POSTs a chat request, not
streamed then streamed (read to its end), one request at a time, in interleaved rounds whose
order alternates, so that drift on a shared machine hits every client alike:

- ``pool``: ``labelgate.proxy.httppool.HttpPool`` (asyncio + httptools);
- ``httpx transport``: ``httpx.AsyncHTTPTransport`` called directly (what the gateway uses
  for upstreams reached through a proxy: no cookie jar, no redirects);
- ``httpx client``: ``httpx.AsyncClient`` (cookies, redirects, event hooks), for reference.

With ``--tls`` the upstream speaks https with a throwaway CA (``trustme``), and every client
trusts it through the same ``ssl.SSLContext``.

Printed per client: median and p99 latency, and this process's CPU per request (the client's
own work: the upstream is another process).

Run: ``python tests/bench/bench_upstream_client.py [--n 3000] [--rounds 6] [--tls]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.proxy.httppool import Endpoint, HttpPool, request_head

TESTS = Path(__file__).resolve().parents[1]
BODY = json.dumps(
    {"model": "fake-chat", "messages": [{"role": "user", "content": "hello " * 50}]}
).encode()
STREAM_BODY = json.dumps(
    {"model": "fake-chat", "messages": [{"role": "user", "content": "hello " * 50}], "stream": True}
).encode()
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-fake"}

Call = Callable[[bytes], Awaitable[int]]  # POST a body, read the answer, return its size


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _fake(work: Path, tls: bool) -> Iterator[tuple[str, ssl.SSLContext | None]]:
    port = _free_port()
    options = ""
    client_tls = None
    if tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
        options = f", ssl_certfile={str(work / 'server.pem')!r}"
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
    code = (
        "import uvicorn; from fakes.upstream import FakeUpstream; "
        f"uvicorn.run(FakeUpstream(keep=False).app(), host='127.0.0.1', port={port}, "
        f"log_level='warning', access_log=False{options})"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://localhost:{port}/v1/chat/completions", client_tls
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def _ready(url: str, tls: ssl.SSLContext | None) -> None:
    async with httpx.AsyncClient(verify=tls or True) as client:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url.replace("chat/completions", "models"))).is_success:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the fake upstream did not come up")


def _clients(url: str, tls: ssl.SSLContext | None) -> tuple[dict[str, Call], list[object]]:
    pool = HttpPool(tls=tls)
    endpoint = Endpoint.parse(url)
    head = request_head(endpoint, HEADERS)

    async def via_pool(body: bytes) -> int:
        if body is BODY:
            return len((await pool.post(endpoint, head, body))[1])
        response = await pool.open(endpoint, head, body)
        try:
            return sum([len(piece) async for piece in response.pieces()])
        finally:
            response.release()

    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512, keepalive_expiry=15)
    transport = httpx.AsyncHTTPTransport(verify=tls or True, limits=limits, trust_env=False)
    target = httpx.URL(url)
    fixed = {"accept-encoding": "identity", "user-agent": "labelgate", **HEADERS}

    async def via_transport(body: bytes) -> int:
        request = httpx.Request("POST", target, headers=fixed, content=body)
        response = await transport.handle_async_request(request)
        try:
            return sum([len(piece) async for piece in response.aiter_raw()])
        finally:
            await response.aclose()

    client = httpx.AsyncClient(verify=tls or True, limits=limits, trust_env=False, timeout=None)

    async def via_client(body: bytes) -> int:
        async with client.stream("POST", url, headers=fixed, content=body) as response:
            return sum([len(piece) async for piece in response.aiter_raw()])

    calls = {"pool": via_pool, "httpx transport": via_transport, "httpx client": via_client}
    return calls, [pool, transport, client]


async def _run(args: argparse.Namespace, url: str, tls: ssl.SSLContext | None) -> None:
    await _ready(url, tls)
    calls, closers = _clients(url, tls)
    for body in (BODY, STREAM_BODY):
        for call in calls.values():  # warm: connections, imports
            for _ in range(50):
                await call(body)
        wall: dict[str, list[float]] = {name: [] for name in calls}
        cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
        per_round = max(1, args.n // args.rounds)
        for k in range(args.rounds):
            order = list(calls) if k % 2 == 0 else list(calls)[::-1]
            for name in order:
                call = calls[name]
                started = time.process_time()
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    await call(body)
                    wall[name].append(time.perf_counter() - t0)
                cpu[name] += time.process_time() - started
        what = "non-streamed" if body is BODY else "streamed (read to the end)"
        print(f"\n{what}, n={per_round * args.rounds} per client, sequential")
        print(f"{'client':<17} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>11}")
        for name in calls:
            xs = sorted(wall[name])
            p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000
            print(
                f"{name:<17} {statistics.median(xs) * 1000:7.3f} {p99:7.3f} "
                f"{cpu[name] / len(xs) * 1000:11.3f}"
            )
    pool, transport, client = closers
    await pool.aclose()  # type: ignore[attr-defined]
    await transport.aclose()  # type: ignore[attr-defined]
    await client.aclose()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per client and shape")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tls", action="store_true", help="https with a throwaway CA")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start; "
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}"
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as work, _fake(Path(work), args.tls) as (url, tls):
        asyncio.run(_run(args, url, tls))
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
