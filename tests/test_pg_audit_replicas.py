"""No answered request without its record, with two replicas on one PostgreSQL audit trail
(issue 22): two real ``labelgate serve`` processes, clients alternating between them under
bounded load (streamed and not), one killed with SIGKILL half-way; restarted on its own state
folder (its journal), every answer a client received complete, from either replica, has its
record, and ``labelgate audit verify`` passes over the whole trail."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fakes.upstream import FakeUpstream
from pg_fixtures import *  # noqa: F403 - fixtures
from test_audit_durability import _config as _durable_config
from test_audit_durability import _free_port, _one, _serve

from labelgate.proxy.embedded import ServerThread

TOTAL = 600  # requests at most (bounded load)
KILL_AFTER = 200  # complete answers (from both) before replica A is killed
CONCURRENCY = 8


@pytest.fixture(scope="module")
def fake_api() -> Iterator[str]:
    fake = FakeUpstream(keep=False)
    server = ServerThread(fake.app()).start()
    yield f"{server.url}/v1"
    server.stop()


def _config(folder: Path, upstream: str, dsn: str) -> Path:
    """Per replica: its own state folder (its journal), the one database."""
    folder.mkdir()
    return _durable_config(folder, upstream, state={"backend": "postgres", "dsn": dsn})


async def _load(ports: list[int], victim: subprocess.Popen[bytes]) -> set[str]:
    """Requests alternate between the replicas; A is killed once KILL_AFTER were answered,
    and the load goes on (A's share fails, B's is answered)."""
    answered: set[str] = set()
    after_kill: set[str] = set()  # B's answers once A is dead
    queue = iter(range(TOTAL))
    killed = asyncio.Event()
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_connections=CONCURRENCY),
            timeout=30,
        )
        for port in ports
    ]

    async def worker() -> None:
        for i in queue:
            request_id = await _one(clients[i % 2], i)
            if request_id is None or (killed.is_set() and i % 2 == 0):
                continue  # refused, cut by the kill, or A's answer read after it
            answered.add(request_id)
            if killed.is_set():
                after_kill.add(request_id)
            if len(answered) >= KILL_AFTER and not killed.is_set():
                victim.send_signal(signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    for client in clients:
        await client.aclose()
    assert killed.is_set(), "the load ended before the kill"
    assert after_kill, "B answered nothing once A was killed"
    return answered


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it once stopped


@pytest.mark.slow
def test_every_answer_of_two_replicas_has_its_record_after_one_is_killed(
    tmp_path: Path, fake_api: str, pg_dsn: str
) -> None:
    configs = [_config(tmp_path / name, fake_api, pg_dsn) for name in ("a", "b")]
    ports = [_free_port(), _free_port()]
    a, b = (_serve(config, port) for config, port in zip(configs, ports, strict=True))
    answered = asyncio.run(_load(ports, a))
    assert a.wait(timeout=30) == -signal.SIGKILL
    _stop(b)
    # A's next start stores what the killed process journaled (and nothing twice).
    _stop(_serve(configs[0], ports[0]))
    with psycopg.connect(pg_dsn) as conn:
        recorded = {row[0] for row in conn.execute("select id from requests")}
    missing = answered - recorded
    assert not missing, f"{len(missing)} of {len(answered)} answers have no record"
    verify = [sys.executable, "-m", "labelgate", "audit", "verify", "--dsn", pg_dsn]
    done = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("OK"), done.stdout + done.stderr
