"""One query layer, two backends: the trail a real proxy run wrote to SQLite, copied row for
row into PostgreSQL, verifies there with the same head, and ``labelgate trace``, the Python
query layer and ``labelgate ui`` give the same answers on both."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from pg_fixtures import *  # noqa: F403 - fixtures
from proxy_fixtures import *  # noqa: F403 - fixtures
from starlette.testclient import TestClient
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import AuditData

from labelgate.guard.audit.query import AuditReader
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.views import TraceFilter
from labelgate.guard.cli import main
from labelgate.proxy.ui.app import create_ui_app

psycopg = pytest.importorskip("psycopg")
pgstore = pytest.importorskip("labelgate.guard.audit.pgstore")

TABLES = ("requests", "messages", "label_events", "decisions", "spans", "seals", "ledger")


def _copy(sqlite_path: object, dsn: str) -> None:
    """Every audit row of the SQLite file into the (migrated) PostgreSQL database."""
    pgstore.PgAuditStore(dsn).close()  # migrates
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    with psycopg.connect(dsn) as target:
        for table in (*TABLES, "contents"):
            cursor = source.execute(
                "select sha256, size, text, packed from contents"
                if table == "contents"
                else f'select * from "{table}"'
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            if rows:
                columns = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join("%s" for _ in names)
                with target.cursor() as cur:
                    cur.executemany(f'insert into "{table}" ({columns}) values ({marks})', rows)
    source.close()


@pytest.fixture
def both(audit_db: AuditData, pg_dsn: str) -> Iterator[tuple[AuditData, str]]:
    _copy(audit_db.path, pg_dsn)
    yield audit_db, pg_dsn


def test_the_copied_trail_verifies_with_the_same_head(both: tuple[AuditData, str]) -> None:
    data, dsn = both
    with AuditStore(data.path, readonly=True) as lite, pgstore.PgAuditStore(dsn) as pg:
        here, there = lite.verify(), pg.verify()
    assert here.ok and there.ok, there.summary()
    assert (there.records, there.head_hash) == (here.records, here.head_hash)


FILTERS = [
    TraceFilter(),
    TraceFilter(decision="deny"),
    TraceFilter(agent="mailer"),
    TraceFilter(label="tool:fetch_url"),
    TraceFilter(search="Lisbon"),
    TraceFilter(since=None, limit=2, offset=1),
]


def test_the_query_layer_answers_alike(both: tuple[AuditData, str]) -> None:
    data, dsn = both
    with AuditReader.open(data.path) as lite, AuditReader.open(dsn) as pg:
        for flt in FILTERS:
            here = [s.trace_id for s in lite.list_traces(flt)]
            assert here, flt
            assert [s.trace_id for s in pg.list_traces(flt)] == here, flt
        for ident in (data.reader_request, data.denied_request):
            assert pg.trace(ident).model_dump() == lite.trace(ident).model_dump()
        assert pg.distinct("agent") == lite.distinct("agent")


def _times(line: str) -> tuple[dict[str, object], datetime, float]:
    """A listed trace without its times, its start, its duration."""
    summary = json.loads(line)
    started = datetime.fromisoformat(summary.pop("started"))
    return summary, started, float(summary.pop("duration_ms"))


def _alike(pg: str, lite: str) -> None:
    """The same traces, their times within a millisecond: SQLite turns an ISO time into
    epoch nanoseconds through julianday(), which keeps milliseconds; PostgreSQL keeps µs."""
    pg_rows, lite_rows = pg.splitlines(), lite.splitlines()
    assert len(pg_rows) == len(lite_rows) > 0
    for there, here in zip(map(_times, pg_rows), map(_times, lite_rows), strict=True):
        assert there[0] == here[0]
        assert abs(there[1] - here[1]) <= timedelta(milliseconds=1)
        assert there[2] == pytest.approx(here[2], abs=1.001)


def test_trace_commands_and_the_ui_on_postgres(both: tuple[AuditData, str]) -> None:
    data, dsn = both
    runner = CliRunner()
    lite = runner.invoke(main, ["trace", "show", data.denied_request, "--db", str(data.path)])
    pg = runner.invoke(main, ["trace", "show", data.denied_request, "--dsn", dsn])
    assert pg.exit_code == 0 and pg.output == lite.output, pg.output
    lite = runner.invoke(main, ["trace", "list", "--json", "--db", str(data.path)])
    pg = runner.invoke(main, ["trace", "list", "--json", "--dsn", dsn])
    assert pg.exit_code == 0, pg.output
    _alike(pg.output, lite.output)
    with TestClient(create_ui_app(dsn), base_url="http://127.0.0.1:8765") as client:
        page = client.get(f"/traces/{data.denied_request}")
        assert page.status_code == 200 and "send_email" in page.text
        assert client.get("/traces", params={"q": "Lisbon"}).text.count("<tr>") >= 2
