"""The audit store opens in Datasette as it is: its JSON API reads the documented tables,
joins them, and runs the full-text index."""

from __future__ import annotations

import json

import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import AuditData

datasette_app = pytest.importorskip("datasette.app", reason="datasette is not installed")

DOCUMENTED = {
    "requests",
    "messages",
    "label_events",
    "decisions",
    "spans",
    "ledger",
    "seals",
    "contents",
    "contents_fts",
    "eval_runs",
    "eval_samples",
    "eval_messages",
    "eval_scores",
}


async def test_datasette_reads_the_audit_tables(audit_db: AuditData) -> None:
    ds = datasette_app.Datasette([str(audit_db.path)])
    await ds.invoke_startup()
    name = audit_db.path.stem
    listing = (await ds.client.get(f"/{name}.json")).json()
    tables = {t["name"] for t in listing["tables"]}
    assert tables >= DOCUMENTED

    response = await ds.client.get(f"/{name}/requests.json?_shape=array&agent=mailer&decision=deny")
    assert response.status_code == 200
    (denied,) = response.json()
    assert denied["id"] == audit_db.denied_request and denied["status"] == "denied"
    assert json.loads(denied["label_json"])["integrity"] == "untrusted"

    decisions = (
        await ds.client.get(
            f"/{name}/decisions.json?_shape=array&request_id={audit_db.denied_request}"
        )
    ).json()
    (decision,) = decisions
    chain = json.loads(decision["rule_chain_json"])
    assert decision["sink"] == "tool:send_email" and any(s["decisive"] for s in chain)

    assert "message_texts" in {v["name"] for v in listing["views"]}

    # the documented FTS index (each text once, in contents), through Datasette's own search,
    # then the messages that use it, with their text joined back by the message_texts view
    found = (await ds.client.get(f"/{name}/contents.json?_shape=array&_search=beach")).json()
    assert found and all("beach" in c["text"].lower() for c in found)
    users = (
        await ds.client.get(
            f"/{name}/message_texts.json?_shape=array&content_sha256={found[0]['sha256']}"
        )
    ).json()
    assert {m["request_id"] for m in users} >= {audit_db.reader_request}
    assert all(m["content"] == found[0]["text"] for m in users)

    # arbitrary read-only SQL joining spans to requests, as docs/audit.md shows
    sql = (
        "select r.agent, s.name from requests r join spans s on s.trace_id = r.trace_id "
        "where r.id = :rid"
    )
    rows = (
        await ds.client.get(
            f"/{name}.json",
            params={"sql": sql, "rid": audit_db.denied_request, "_shape": "array"},
        )
    ).json()
    assert rows == [{"agent": "mailer", "name": "chat fake-mailer"}]

    runs = (await ds.client.get(f"/{name}/eval_runs.json?_shape=array")).json()
    assert [r["run_id"] for r in runs] == [audit_db.run_id]
