"""No answered request without its durable record, even when the gateway is killed with
SIGKILL under load: a real ``labelgate serve`` process, bounded load on loopback (streamed and
not), killed after half the answers; restarted on the same state, every answer a client
received complete has its record, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fakes.upstream import FakeUpstream

from labelgate.proxy.embedded import ServerThread

TOTAL = 1200  # requests at most (bounded load)
KILL_AFTER = 600  # complete answers before the kill
CONCURRENCY = 16


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    fake = FakeUpstream(keep=False)
    server = ServerThread(fake.app()).start()
    yield f"{server.url}/v1"
    server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, upstream: str, **sections: object) -> Path:
    """A ``labelgate serve`` config in ``tmp_path``: the fake upstream, the state under
    ``tmp_path``, and ``sections`` (e.g. ``state``)."""
    config = {
        "model_list": [
            {
                "model_name": "fake-chat",
                "litellm_params": {
                    "model": "openai/fake-chat",
                    "api_base": upstream,
                    "api_key": "sk-upstream",
                    "passthrough": True,
                },
            }
        ],
        "guard": {"state_dir": str(tmp_path / "state")},
        **sections,
    }
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LABELGATE_DB"}
    command = [sys.executable, "-m", "labelgate", "serve", "--config", str(config)]
    command += ["--port", str(port), "--log-level", "error"]
    server = subprocess.Popen(command, cwd=config.parent, env=env)
    url = f"http://127.0.0.1:{port}/readyz"
    for _ in range(3000):  # polls the server's readiness, or its exit
        if server.poll() is not None:
            raise AssertionError(f"labelgate serve exited with {server.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=0.05)
    raise AssertionError("labelgate serve never became ready")


async def _one(client: httpx.AsyncClient, i: int) -> str | None:
    """The request id of a complete 2xx answer, else None (refused, cut by the kill)."""
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": f"hello {i}"}]}
    try:
        if i % 3:
            response = await client.post("/v1/chat/completions", json=body)
            response.json()  # the whole body arrived
            ok = response.status_code == 200
            return response.headers["x-request-id"] if ok else None
        async with client.stream("POST", "/v1/chat/completions", json=body | {"stream": True}) as s:
            text = (await s.aread()).decode()
            done = s.status_code == 200 and text.rstrip().endswith("data: [DONE]")
            return s.headers["x-request-id"] if done else None
    except (httpx.HTTPError, ValueError):
        return None


async def _load(port: int, server: subprocess.Popen[bytes]) -> set[str]:
    answered: set[str] = set()
    queue = iter(range(TOTAL))
    killed = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            if killed.is_set():
                return
            request_id = await _one(client, i)
            if request_id is not None and not killed.is_set():
                answered.add(request_id)
                if len(answered) >= KILL_AFTER:
                    server.send_signal(signal.SIGKILL)
                    killed.set()

    limits = httpx.Limits(max_connections=CONCURRENCY)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    assert killed.is_set(), "the load ended before the kill"
    return answered


@pytest.mark.slow
def test_every_answer_has_its_record_after_kill_9(tmp_path: Path, upstream: str) -> None:
    config, port = _config(tmp_path, upstream), _free_port()
    server = _serve(config, port)
    answered = asyncio.run(_load(port, server))
    assert server.wait(timeout=30) == -signal.SIGKILL
    # The next start stores what the killed process journaled; a clean stop flushes.
    again = _serve(config, port)
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it once stopped
    db = tmp_path / "state" / "audit.db"
    with sqlite3.connect(db) as conn:
        recorded = {row[0] for row in conn.execute("select id from requests")}
    missing = answered - recorded
    assert not missing, f"{len(missing)} of {len(answered)} answers have no record"
    verify = [sys.executable, "-m", "labelgate", "audit", "verify", "--db", str(db)]
    done = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
