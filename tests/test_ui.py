"""The read-only audit web UI (Starlette, server-rendered) over a real store: every view,
escaping of untrusted text, security headers, loopback-only, and nothing written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from proxy_fixtures import *  # noqa: F403 - fixtures
from starlette.testclient import TestClient
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import SCRIPT_PAGE, AuditData

from labelgate.proxy.ui.app import create_ui_app
from labelgate.proxy.ui.cli import ui


@pytest.fixture
def client(audit_db: AuditData) -> Iterator[TestClient]:
    with TestClient(create_ui_app(audit_db.path), base_url="http://127.0.0.1:8765") as c:
        yield c


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_trace_list_filters_and_search(client: TestClient, audit_db: AuditData) -> None:
    page = client.get("/traces")
    assert page.status_code == 200 and page.text.count("<tr>") == 1 + 5  # header + 5 traces
    denied = client.get("/traces", params={"decision": "deny"}).text
    assert denied.count("<tr>") == 2 and "mailer" in denied
    searched = client.get("/traces", params={"q": "Lisbon", "agent": "mailer"}).text
    assert searched.count("<tr>") == 2
    labelled = client.get("/traces", params={"label": "tool:fetch_url"}).text
    assert labelled.count("<tr>") == 4
    empty = client.get("/traces", params={"since": "1m", "model": "nope"}).text
    assert "No trace matches." in empty
    assert client.get("/traces", params={"since": "whenever"}).status_code == 400


def test_trace_page_shows_labels_evidence_and_the_rule_chain(
    client: TestClient, audit_db: AuditData
) -> None:
    page = client.get(f"/traces/{audit_db.denied_request}")
    assert page.status_code == 200
    html = page.text
    assert "chat fake-mailer" in html and "model call" in html
    assert 'class="badge a-deny"' in html and "tool:send_email" in html
    assert "baseline:untrusted-side-effect" in html and "(decisive)" in html
    assert "derived from untrusted source" in html
    assert "<b>fingerprint</b>" in html  # why the relayed text is untrusted
    assert "public/untrusted" in html
    reader = client.get(f"/traces/{audit_db.reader_request}").text
    assert "<b>declassify</b>" in reader and "release-travel-summaries" in reader
    assert "internal/trusted" in reader  # the label before declassification


def test_eval_views(client: TestClient, audit_db: AuditData) -> None:
    runs = client.get("/runs").text
    assert audit_db.run_id in runs and "choice" in runs
    run = client.get(f"/runs/{audit_db.run_id}").text
    assert audit_db.sample_id in run and 'id="samples"' in run
    sample = client.get(f"/runs/{audit_db.run_id}/samples/{audit_db.sample_id}")
    assert sample.status_code == 200
    assert "Which action do you choose?" in sample.text and "choice" in sample.text
    tree = client.get(f"/traces/{audit_db.run_id}/{audit_db.sample_id}").text
    assert "span focus" in tree and "eval.agent_turn" in tree
    assert client.get("/runs/nope").status_code == 404
    assert client.get("/traces/nope").status_code == 404


def test_script_in_a_message_is_shown_as_text(client: TestClient, audit_db: AuditData) -> None:
    html = client.get(f"/traces/{audit_db.script_request}").text
    assert "<script>" not in html.lower()
    assert "&lt;script&gt;document.title=&#39;pwned&#39;" in html
    csp = client.get("/traces").headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script may run
    assert SCRIPT_PAGE.startswith("Cheap flights!")


def test_read_only(client: TestClient, audit_db: AuditData) -> None:
    before = digest(audit_db.path)
    for path in ("/traces", f"/traces/{audit_db.denied_request}", "/runs"):
        assert client.get(path).status_code == 200
    assert client.post("/traces").status_code == 405
    assert client.delete(f"/traces/{audit_db.denied_request}").status_code == 405
    assert digest(audit_db.path) == before


def test_host_header_must_be_loopback(audit_db: AuditData) -> None:
    app = create_ui_app(audit_db.path)
    assert TestClient(app, base_url="http://evil.example").get("/traces").status_code == 400
    assert TestClient(app, base_url="http://localhost:9").get("/traces").status_code == 200


def test_cli_refuses_other_addresses_and_missing_files(tmp_path: Path) -> None:
    exposed = CliRunner().invoke(ui, ["--host", "0.0.0.0", "--db", str(tmp_path / "a.db")])
    assert exposed.exit_code == 1 and "not a loopback address" in exposed.output
    missing = CliRunner().invoke(ui, ["--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 1 and "no audit database" in missing.output
    assert not (tmp_path / "none.db").exists()  # never created
