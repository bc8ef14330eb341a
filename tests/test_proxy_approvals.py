"""``ask`` decisions held for a person (endpoint and CLI), the audit under load, serve errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import Guarded, async_sdk, passthrough_config, sdk

from labelgate.guard.audit import AuditStore
from labelgate.proxy.auth import hash_key
from labelgate.proxy.cli import approvals, serve

DELETE = {"type": "function", "function": {"name": "delete_file", "parameters": {}}}
StartGuarded = Callable[..., Guarded]


def _ask(url: str, key: str = "sk-worker") -> Any:
    return sdk(url, key=key).chat.completions.create(
        model="fake-tools",
        messages=[{"role": "user", "content": "Clean up the old report."}],
        tools=[DELETE],
    )


def _pending(proxy: Guarded, key: str = "sk-admin") -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = httpx.get(f"{proxy.url}/labelgate/approvals", headers=headers).json()["data"]
        if data:
            return data  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("no approval appeared")


@pytest.fixture
def asking(start_guarded: StartGuarded, fake_url: str) -> Guarded:
    keys = [
        {"key_hash": hash_key("sk-worker"), "agent_id": "worker"},
        {"key_hash": hash_key("sk-admin"), "agent_id": "ops", "assertions": {"approve": True}},
    ]
    return start_guarded(passthrough_config(fake_url, keys=keys), guard={"approvals_timeout": 5})


def test_ask_is_held_until_approved_through_the_endpoint(asking: Guarded) -> None:
    with ThreadPoolExecutor(1) as pool:
        held: Future[Any] = pool.submit(_ask, asking.url)
        (item,) = _pending(asking)
        assert not held.done()
        assert item["agent"] == "worker" and item["rule"] == "confirm-deletes"
        # The agent itself may not approve its own flow.
        own = httpx.post(
            f"{asking.url}/labelgate/approvals/{item['id']}",
            json={"approve": True},
            headers={"authorization": "Bearer sk-worker"},
        )
        assert own.status_code == 403
        ok = httpx.post(
            f"{asking.url}/labelgate/approvals/{item['id']}",
            json={"approve": True, "by": "alice", "note": "old report"},
            headers={"authorization": "Bearer sk-admin"},
        )
        assert ok.status_code == 200 and ok.json()["by"] == "alice (key of ops)"
        answer = held.result(timeout=5)
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "delete_file"
    store = _store(asking)
    (decision,) = store.list_decisions()
    assert decision["action"] == "allow" and "approved by alice" in decision["reason"]


def test_ask_rejected_with_the_cli_is_denied(asking: Guarded) -> None:
    runner = CliRunner()
    with ThreadPoolExecutor(1) as pool:
        held: Future[Any] = pool.submit(_ask, asking.url)
        (item,) = _pending(asking)
        listed = runner.invoke(approvals, ["list", "--url", asking.base, "--key", "sk-admin"])
        assert listed.exit_code == 0 and item["id"] in listed.output
        done = runner.invoke(
            approvals,
            ["reject", item["id"], "--note", "no", "--url", asking.base, "--key", "sk-admin"],
        )
        assert done.exit_code == 0, done.output
        answer = held.result(timeout=5)
    message = answer.choices[0].message
    assert message.tool_calls is None
    assert "delete_file was blocked" in message.content and "rejected by" in message.content
    missing = runner.invoke(
        approvals, ["approve", "nope", "--url", asking.base, "--key", "sk-admin"]
    )
    assert missing.exit_code != 0 and "no pending approval nope" in missing.output


def test_ask_times_out_denied(start_guarded: StartGuarded, fake_url: str) -> None:
    proxy = start_guarded(passthrough_config(fake_url), guard={"approvals_timeout": 0.2})
    answer = sdk(proxy.url).chat.completions.create(
        model="fake-tools",
        messages=[{"role": "user", "content": "Clean up the old report."}],
        tools=[DELETE],
    )
    assert answer.choices[0].message.tool_calls is None
    assert "no answer within 0.2s: denied" in answer.choices[0].message.content


def _store(proxy: Guarded) -> AuditStore:
    proxy.stop()
    return AuditStore(proxy.audit_path, readonly=True)


# --------------------------------------------------------------------------- load


def test_every_request_has_exactly_one_audit_record_under_load(
    start_guarded: StartGuarded, fake_url: str
) -> None:
    # A generous upstream timeout: on a loaded 2-core machine 0.5 s is sometimes exceeded.
    proxy = start_guarded(passthrough_config(fake_url, timeout=10))
    total, concurrency = 200, 16
    models = ["fake-500" if n % 5 == 0 else "fake-chat" for n in range(total)]

    async def run() -> list[str]:
        client = async_sdk(proxy.url, default_headers={"X-Labelgate-Agent": "load"})
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int) -> str:
            async with gate:
                messages = [{"role": "user", "content": f"request {n}"}]
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=models[n], messages=messages, stream=n % 7 == 0
                    )
                    if n % 7 == 0:
                        async for _ in raw.parse():  # type: ignore[attr-defined] # drain it
                            pass
                    return raw.headers["x-request-id"]
                except openai.InternalServerError as exc:
                    return exc.response.headers["x-request-id"] if exc.response else ""

        ids = await asyncio.gather(*(one(n) for n in range(total)))
        await client.close()
        return ids

    ids = asyncio.run(run())
    store = _store(proxy)
    rows = list(store.db["requests"].rows)
    assert len(rows) == total
    by_status = {s: sum(r["status"] == s for r in rows) for s in ("ok", "error")}
    errors = [(r["model"], r["error"]) for r in rows if r["status"] == "error"]
    assert by_status == {"ok": 160, "error": 40}, [e for e in errors if e[0] != "fake-500"]
    known = {r["id"] for r in rows}
    assert {i for i in ids if i} <= known
    assert store.counts()["messages"] == total + 160  # each input, plus each answer
    assert store.verify().ok


# --------------------------------------------------------------------------- serve


def test_serve_stops_on_an_invalid_policy(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: 1\nlattice:\n  confidentiality: [public]\nsinks:\n  - id: x\n")
    config = tmp_path / "labelgate.proxy.yaml"
    config.write_text(json.dumps({"guard": {"policy": str(policy), "state_dir": str(tmp_path)}}))
    result = CliRunner().invoke(serve, ["--config", str(config), "--port", "0"])
    assert result.exit_code == 1
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert f"{policy}:5" in line
