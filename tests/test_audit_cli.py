"""``labelgate audit verify`` and ``stats``: one readable line, exit codes that scripts can use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelgate.guard.audit.cli import audit
from labelgate.guard.audit.records import MessageRecord, RequestRecord
from labelgate.guard.audit.store import AuditStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "audit.db"
    request = RequestRecord(model="m")
    with AuditStore(path) as store:
        store.write_batch(
            [request, MessageRecord(request_id=request.id, position=0, content="hello")]
        )
    return path


def test_verify_ok(db: Path) -> None:
    result = CliRunner().invoke(audit, ["verify", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 2 records verified (messages 1, requests 1); head ")
    assert len(result.output.strip().splitlines()) == 1


def test_verify_tampered_exits_1_naming_the_record(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        message_id = conn.execute("select id from messages").fetchone()[0]
        conn.execute("update messages set content = 'goodbye'")
    result = CliRunner().invoke(audit, ["verify", "--db", str(db)])
    assert result.exit_code == 1
    assert result.output.startswith(f"TAMPERED: seq 2 (messages {message_id})")


def test_verify_with_an_anchor(db: Path) -> None:
    head = CliRunner().invoke(audit, ["verify", "--db", str(db)]).output.split()[-1]
    ok = CliRunner().invoke(audit, ["verify", "--db", str(db), "--expect", head])
    assert ok.exit_code == 0
    bad = CliRunner().invoke(audit, ["verify", "--db", str(db), "--expect", "0" * 63 + "1"])
    assert bad.exit_code == 1 and "not in the chain" in bad.output


def test_missing_or_foreign_database_exits_2(tmp_path: Path) -> None:
    missing = CliRunner().invoke(audit, ["verify", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no audit database" in missing.output
    assert not (tmp_path / "nope.db").exists()  # verify never creates a database
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table t (x)")
    foreign = CliRunner().invoke(audit, ["verify", "--db", str(other)])
    assert foreign.exit_code == 2 and "not a labelgate audit database" in foreign.output


def test_default_db_comes_from_the_environment(db: Path) -> None:
    result = CliRunner(env={"LABELGATE_DB": str(db)}).invoke(audit, ["stats"])
    assert result.exit_code == 0, result.output
    assert "requests      1" in result.output and "ledger        2" in result.output
    assert "chain head seq 2" in result.output


def test_cli_module_imports_only_click() -> None:
    import subprocess
    import sys

    code = (
        "import sys, guard.audit.cli; "
        "print(any(m.startswith(('sqlite_utils', 'opentelemetry')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
