"""Two proxy replicas on one PostgreSQL act as one (issue 22): a confidential document or answer
given at one is labeled when relayed through the other, an ``ask`` held at one is answered
through the other, a key's rate limit and concurrency cap hold across both; an unreachable or
failing database fails closed. In-process gateways on loopback, fake upstream, real server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from click.testing import CliRunner
from pg_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import Guarded, passthrough_config, sdk

from labelgate.guard.audit.cli import audit as audit_cli
from labelgate.proxy.auth import hash_key
from labelgate.proxy.cli import serve

POLICIES = Path(__file__).resolve().parent.parent / "policies"
DELETE = {"type": "function", "function": {"name": "delete_file", "parameters": {}}}
WAIT = 30.0  # a safety net for a broken listener, not a bound the tests measure
KEYS = [
    {"key_hash": hash_key("sk-support"), "agent_id": "support-agent"},
    {"key_hash": hash_key("sk-legal"), "agent_id": "legal-agent"},
    {"key_hash": hash_key("sk-admin"), "agent_id": "ops", "assertions": {"approve": True}},
    {"key_hash": hash_key("sk-worker"), "agent_id": "worker", "max_concurrency": 1},
    # two requests, then one every 1,000 s: what one replica took, the other cannot
    {
        "key_hash": hash_key("sk-metered"),
        "agent_id": "metered",
        "rate_limit": {"requests_per_second": 0.001, "burst": 2},
    },
    {
        "key_hash": hash_key("sk-metered-3"),
        "agent_id": "metered-3",
        "rate_limit": {"requests_per_second": 0.001, "burst": 3},
    },
]
Replicas = Callable[..., tuple[Guarded, ...]]


@pytest.fixture
def replicas(start_guarded: Callable[..., Guarded], fake_url: str, pg_dsn: str) -> Replicas:
    """``replicas(policy=None, n=2, **state) -> (a, b, ...)``: ``n`` gateways on the test's
    database."""

    def start(policy: str | None = None, n: int = 2, **state: Any) -> tuple[Guarded, ...]:
        config = passthrough_config(fake_url, keys=KEYS)
        config["state"] = {"backend": "postgres", "dsn": pg_dsn, **state}
        # the audit trail written by a thread: what is shared is under test, not the audit
        # process (whose start and stop cost a second or two per replica)
        guard: dict[str, Any] = {"approvals_timeout": 10, "audit_process": False}
        if policy:
            guard["policy"] = str(POLICIES / policy)
        return tuple(start_guarded(config, guard=guard) for _ in range(n))

    return start


def _in_step(a: Guarded, b: Guarded) -> None:
    """Once b's fingerprint index holds every row a's does (b's listener heard of them)."""
    mine, theirs = a.runtime.fingerprints, b.runtime.fingerprints
    assert theirs.wait_until(lambda: theirs.loaded >= mine.loaded, WAIT)  # type: ignore[attr-defined]


def _label(raw: Any) -> dict[str, Any]:
    return json.loads(raw.headers["x-labelgate-label"])  # type: ignore[no-any-return]


def test_a_document_and_an_answer_given_at_a_are_labeled_at_b(replicas: Replicas) -> None:
    a, b = replicas("rag-confidentiality.yaml")
    doc = (
        "Quarterly finance ledger: revenue 12.4M, margin 31 percent, "
        "the Berlin office closes in March and forty roles move to Lisbon."
    )
    stored = httpx.post(
        f"{a.url}/labelgate/documents",
        json={"documents": [{"text": doc, "source": "finance/ledger/2024q1"}]},
        headers={"authorization": "Bearer sk-legal"},
    )
    assert stored.status_code == 200 and stored.json()["data"][0]["stored"]
    _in_step(a, b)
    raw = sdk(b.url, key="sk-support").chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": f"What does this mean? {doc}"}]
    )
    assert _label(raw)["confidentiality"] == "confidential"
    assert "12.4M" not in raw.parse().choices[0].message.content

    # An answer labeled at a (legal may read the memo), relayed by hand through b.
    memo = "Settlement memo: we will pay 2M to close the Acme lawsuit before the hearing."
    answered = sdk(a.url, key="sk-legal").chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": memo}],
        extra_body={"labelgate": {"messages": {"0": {"kind": "document", "source": "legal/x"}}}},
    )
    text = answered.choices[0].message.content
    assert text == f"echo: {memo}"
    store = a.runtime.fingerprints
    assert store.wait_until(lambda: bool(store.lookup(text)), WAIT)  # type: ignore[attr-defined]
    _in_step(a, b)
    relayed = sdk(b.url, key="sk-support").chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": f"Legal said: {text}"}]
    )
    assert _label(relayed)["confidentiality"] == "restricted"
    assert "2M" not in relayed.parse().choices[0].message.content


def test_with_read_your_writes_an_answer_is_labeled_at_b_as_soon_as_it_is_received(
    replicas: Replicas,
) -> None:
    """No wait for b's listener: a's answer left once stored, and b loads what it lacks
    before it labels a request."""
    a, b = replicas("rag-confidentiality.yaml", read_your_writes=True)
    memo = "Settlement memo: the Acme claim closes for 2M before the hearing on the ninth."
    answered = sdk(a.url, key="sk-legal").chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": memo}],
        extra_body={"labelgate": {"messages": {"0": {"kind": "document", "source": "legal/y"}}}},
    )
    text = answered.choices[0].message.content
    relay = [{"role": "user", "content": f"Legal said: {text}"}]
    support = sdk(b.url, key="sk-support").chat.completions
    relayed = support.with_raw_response.create(model="fake-chat", messages=relay)
    assert _label(relayed)["confidentiality"] == "restricted"
    assert "2M" not in relayed.parse().choices[0].message.content
    chunks = list(support.create(model="fake-chat", messages=relay, stream=True))
    assert chunks[-1].model_extra["labelgate"]["label"]["confidentiality"] == "restricted"
    assert "2M" not in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _ask(url: str, key: str = "sk-worker") -> Any:
    return sdk(url, key=key, timeout=WAIT).chat.completions.create(
        model="fake-tools",
        messages=[{"role": "user", "content": "Clean up the old report."}],
        tools=[DELETE],
    )


def _pending(proxy: Guarded) -> list[dict[str, Any]]:
    """The approvals listed at ``proxy``, once there are some (polled)."""
    headers = {"authorization": "Bearer sk-admin"}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        data = httpx.get(f"{proxy.url}/labelgate/approvals", headers=headers).json()["data"]
        if data:
            return data  # type: ignore[no-any-return]
    raise AssertionError("no approval appeared")


def test_an_ask_held_at_a_is_answered_through_b_and_holds_the_key_slot(
    replicas: Replicas,
) -> None:
    a, b = replicas()
    with ThreadPoolExecutor(1) as pool:
        held: Future[Any] = pool.submit(_ask, a.url)
        (item,) = _pending(b)  # listed at b
        assert item["agent"] == "worker" and item["rule"] == "confirm-deletes"
        # the held request has worker's one slot: b refuses a second one
        with pytest.raises(openai.RateLimitError, match="too many concurrent requests"):
            _ask(b.url)
        ok = httpx.post(
            f"{b.url}/labelgate/approvals/{item['id']}",
            json={"approve": True, "by": "alice"},
            headers={"authorization": "Bearer sk-admin"},
        )
        assert ok.status_code == 200, ok.text
        answer = held.result(timeout=WAIT)
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "delete_file"
    again = httpx.post(
        f"{a.url}/labelgate/approvals/{item['id']}",
        json={"approve": False},
        headers={"authorization": "Bearer sk-admin"},
    )
    assert again.status_code == 404  # answered once, at either replica


def test_a_rate_limit_holds_across_replicas(replicas: Replicas) -> None:
    a, b = replicas()

    def chat(proxy: Guarded) -> Any:
        return sdk(proxy.url, key="sk-metered").chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi"}]
        )

    chat(a)
    chat(b)  # the burst of two, spent at two replicas
    for proxy in (a, b):
        with pytest.raises(openai.RateLimitError, match="rate limit exceeded"):
            chat(proxy)


def test_three_replicas_act_as_one(replicas: Replicas, pg_dsn: str) -> None:
    """Clients alternating over three replicas: a document stored at a is confidential at c,
    an ask held at a is listed at b and answered through c, a key's burst of three is spent
    once over all three, and the trail verifies as one."""
    a, b, c = replicas(n=3)
    doc = "Board minutes: the Lisbon office opens in May with a budget of 3.1M and 25 roles."
    stored = httpx.post(
        f"{a.url}/labelgate/documents",
        json=[
            {"text": doc, "source": "board/minutes", "label": {"confidentiality": "confidential"}}
        ],
        headers={"authorization": "Bearer sk-legal"},
    )
    assert stored.status_code == 200 and stored.json()["data"][0]["stored"], stored.text
    _in_step(a, c)
    raw = sdk(c.url, key="sk-support").chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": f"Summarise: {doc}"}]
    )
    assert _label(raw)["confidentiality"] == "confidential"

    with ThreadPoolExecutor(1) as pool:
        held: Future[Any] = pool.submit(_ask, a.url)
        (item,) = _pending(b)
        ok = httpx.post(
            f"{c.url}/labelgate/approvals/{item['id']}",
            json={"approve": True, "by": "alice"},
            headers={"authorization": "Bearer sk-admin"},
        )
        assert ok.status_code == 200, ok.text
        assert held.result(timeout=WAIT).choices[0].message.tool_calls

    def chat(proxy: Guarded) -> Any:
        return sdk(proxy.url, key="sk-metered-3").chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi"}]
        )

    for proxy in (a, b, c):
        chat(proxy)
    for proxy in (a, b, c):
        with pytest.raises(openai.RateLimitError, match="rate limit exceeded"):
            chat(proxy)
    for proxy in (a, b, c):
        proxy.stop()  # every record written
    verify = CliRunner().invoke(audit_cli, ["verify", "--dsn", pg_dsn])
    assert verify.exit_code == 0 and verify.output.startswith("OK"), verify.output


def _block(dsn: str, blocked: bool) -> None:
    """Cut the replicas off their database (as an outage would), or let them back."""
    name = dsn.rsplit("/", 1)[1]
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(not blocked).lower()}")
        if blocked:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


@pytest.fixture
def outage(pg_dsn: str) -> Iterator[Callable[[bool], None]]:
    yield lambda blocked: _block(pg_dsn, blocked)
    _block(pg_dsn, False)


def test_a_failing_database_fails_closed_then_recovers(
    replicas: Replicas, outage: Callable[[bool], None]
) -> None:
    a, _ = replicas()
    store = a.runtime.fingerprints
    client = sdk(a.url, key="sk-support")
    outage(True)
    assert store.wait_until(lambda: not store.in_step, WAIT)  # type: ignore[attr-defined]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "anything new?"}]
        )
    assert caught.value.status_code == 503
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "state_unavailable"
    assert "PostgreSQL" in error["message"]
    ready = httpx.get(f"{a.base}/readyz")  # a load balancer sends elsewhere meanwhile
    assert ready.status_code == 503 and "not in step" in ready.json()["error"]["message"]
    outage(False)
    assert store.wait_until(lambda: store.in_step, WAIT)  # type: ignore[attr-defined]
    answer = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "anything new?"}]
    )
    assert answer.choices[0].message.content == "echo: anything new?"


def test_serve_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "state: {backend: postgres, dsn: 'postgresql://lg:hunter2@127.0.0.1:1/labelgate'}\n"
        f"guard: {{state_dir: {tmp_path / 'state'}}}\n"
    )
    result = CliRunner().invoke(serve, ["--config", str(config), "--port", "0"])
    assert result.exit_code == 1
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error")]
    assert line.startswith("Error: PostgreSQL postgresql://lg@127.0.0.1:1/labelgate: cannot")
    assert "hunter2" not in result.output
