"""The audit store on a real PostgreSQL (issue 22): the same writer, journal, verifier and
query layer as on SQLite; two writers (replicas) on one trail that verifies as a whole;
tampering found; an outage of the server refuses new requests, loses nothing, and the replica
recovers by itself or at its next start (journal replayed, nothing stored twice)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner
from pg_fixtures import *  # noqa: F403 - fixtures
from tcpgate import TcpGate

from labelgate.guard.audit.errors import AuditWriteError, StoreUnavailable
from labelgate.guard.audit.query import AuditReader
from labelgate.guard.audit.records import (
    AuditRecord,
    DecisionRecord,
    DeferredRecords,
    LabelEventRecord,
    MessageRecord,
    RequestRecord,
    SpanRecord,
)
from labelgate.guard.audit.views import TraceFilter
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.cli import main

psycopg = pytest.importorskip("psycopg")
pgstore = pytest.importorskip("labelgate.guard.audit.pgstore")
PgAuditStore = pgstore.PgAuditStore


def _request(i: int, agent: str = "agent-a") -> list[AuditRecord]:
    """One request's records: a request, two messages, a label event, a decision, a span."""
    trace = f"{i:032x}"
    request = RequestRecord(
        trace_id=trace,
        agent=agent,
        model="fake-chat",
        duration_ms=12.5,
        label={"confidentiality": "internal", "integrity": "trusted", "sources": ["doc:hr"]},
        decision="allow",
    )
    return [
        request,
        MessageRecord(request_id=request.id, position=0, role="user", content=f"question {i}"),
        MessageRecord(
            request_id=request.id, position=1, role="assistant", content=f"copper wire {i}"
        ),
        LabelEventRecord(request_id=request.id, origin="source_rule", detail="doc:hr"),
        DecisionRecord(
            request_id=request.id,
            trace_id=trace,
            span_id=f"{i:016x}",
            sink="answer:agent-b",
            action="allow",
        ),
        SpanRecord(
            trace_id=trace,
            span_id=f"{i:016x}",
            name="chat fake-chat",
            start_ns=1_800_000_000_000_000_000 + i,
            end_ns=1_800_000_000_000_000_000 + i + 5,
            attributes={"labelgate.request.id": request.id, "gen_ai.agent.name": agent},
        ),
    ]


@dataclass
class Answer(DeferredRecords):
    """A request's records as a server journals them before its answer leaves."""

    request_id: str

    def records(self) -> list[AuditRecord]:
        return [RequestRecord(id=self.request_id, status="ok")]

    def __len__(self) -> int:
        return 1

    @property
    def journal_key(self) -> str:
        return self.request_id


def _ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("select id from requests order by seq")]


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_write_verify_and_query_round_trip(pg_dsn: str) -> None:
    with AuditWriter(pg_dsn) as writer:
        for i in range(3):
            for record in _request(i):
                writer.submit(record)
    with PgAuditStore(pg_dsn, readonly=True) as store:
        report = store.verify()
        assert report.ok and report.records == 18, report.summary()
        assert store.counts()["contents"] == 6
    with AuditReader.open(pg_dsn) as reader:
        assert len(reader.list_traces()) == 3
        assert len(reader.list_traces(TraceFilter(label="doc:hr"))) == 3
        assert len(reader.list_traces(TraceFilter(agent="agent-a"))) == 3
        (found,) = reader.list_traces(TraceFilter(search="copper wire 1"))
        view = reader.trace(found.trace_id)
        (span,) = view.roots
        assert span.request is not None
        assert [m.content for m in span.request.messages] == ["question 1", "copper wire 1"]
        assert [d.action for d in span.decisions] == ["allow"]
    code, out = _cli("audit", "verify", "--dsn", pg_dsn)
    assert code == 0 and out.startswith("OK: 18 records verified"), out
    code, out = _cli("trace", "list", "--dsn", pg_dsn, "--search", "copper", "--json")
    assert code == 0 and len(out.splitlines()) == 3, out
    code, out = _cli("trace", "show", "--dsn", pg_dsn, found.trace_id, "--full")
    assert code == 0 and "copper wire 1" in out, out
    code, out = _cli("trace", "export", "--dsn", pg_dsn, found.trace_id, "--format", "jsonl")
    assert code == 0 and "copper wire 1" in out, out
    code, out = _cli("audit", "stats", "--dsn", pg_dsn)
    assert code == 0 and "messages      6" in out and "chain head seq 18" in out, out


def test_the_store_options(pg_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with AuditWriter(pg_dsn) as writer:
        writer.submit(RequestRecord())
    monkeypatch.setenv("LABELGATE_DSN", pg_dsn)  # the store when no --db is given
    assert _cli("audit", "verify")[1].startswith("OK: 1 records verified")
    code, out = _cli("audit", "verify", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no audit database" in out, out  # --db wins over the variable
    code, out = _cli("audit", "verify", "--db", "a.db", "--dsn", pg_dsn)
    assert code == 1 and "not both" in out, out
    code, out = _cli("trace", "list", "--dsn", "localhost:5432/x")
    assert code == 1 and "not a PostgreSQL URL" in out, out


def test_a_text_postgresql_cannot_hold_is_kept_packed(pg_dsn: str) -> None:
    """PostgreSQL text holds no NUL character: such a message text is stored compressed, and
    comes back, hashed and searched as any other."""
    request = RequestRecord()
    text = "before\x00after"
    with AuditWriter(pg_dsn) as writer:
        writer.submit(request)
        writer.submit(MessageRecord(request_id=request.id, position=0, content=text))
    with PgAuditStore(pg_dsn, readonly=True) as store:
        assert store.verify().ok
        assert [m["content"] for m in store.messages_for(request.id)] == [text]
    with AuditReader.open(pg_dsn) as reader:
        assert reader.request(request.id).messages[0].content == text


def test_two_replicas_interleaving_verify_as_one_trail(pg_dsn: str) -> None:
    """Two writers (one through its child process, as ``labelgate serve`` writes) append at
    once, round after round (each round, both race for the chain's lock): one chain, every
    record, verified."""
    a = AuditWriter(pg_dsn, batch_size=6, max_delay=0)
    b = AuditWriter(pg_dsn, batch_size=6, max_delay=0, process=True)
    per_replica = 40
    rounds = threading.Barrier(2)

    def load(writer: AuditWriter, agent: str, first: int) -> None:
        for i in range(first, first + per_replica):
            rounds.wait()
            asyncio.run(writer.asubmit_many(_request(i, agent)))
            writer.flush()

    threads = [
        threading.Thread(target=load, args=(a, "agent-a", 0)),
        threading.Thread(target=load, args=(b, "agent-b", per_replica)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a.close()
    b.close()
    with psycopg.connect(pg_dsn) as conn:
        agents = [r[0] for r in conn.execute("select agent from requests order by seq")]
    assert agents.count("agent-a") == agents.count("agent-b") == per_replica
    switches = sum(1 for x, y in itertools.pairwise(agents) if x != y)
    assert switches >= per_replica  # every round holds both: the replicas interleave
    with PgAuditStore(pg_dsn, readonly=True) as store:
        report = store.verify()
    assert report.ok and report.records == 2 * per_replica * 6, report.summary()


@pytest.fixture
def trail(pg_dsn: str) -> Iterator[str]:
    with AuditWriter(pg_dsn) as writer:
        for i in range(4):
            for record in _request(i):
                writer.submit(record)
    yield pg_dsn


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            "update requests set model = 'other' where seq = 7",
            "seq 7 (requests",
        ),
        (
            "update contents set text = 'rewritten' where text = 'copper wire 2'",
            "was changed (used by 1 messages)",
        ),
        ("delete from decisions where seq = 11", "row is missing from decisions (deleted?)"),
        ("delete from ledger where seq = 20", "seq 20 (ledger): missing from the ledger"),
    ],
)
def test_tampering_is_found(trail: str, change: str, problem: str) -> None:
    with psycopg.connect(trail, autocommit=True) as conn:
        conn.execute(change)
    code, out = _cli("audit", "verify", "--dsn", trail)
    assert code == 1, out
    assert out.startswith("TAMPERED") and problem in out, out


def test_a_rewritten_chain_is_found_by_an_expected_head(trail: str) -> None:
    with PgAuditStore(trail, readonly=True) as store:
        head = store.verify().head_hash
    with psycopg.connect(trail, autocommit=True) as conn:  # the last record removed whole
        conn.execute("delete from spans where seq = 24")
        conn.execute("delete from ledger where seq = 24")
    assert _cli("audit", "verify", "--dsn", trail)[0] == 0  # a shorter chain is still a chain
    code, out = _cli("audit", "verify", "--dsn", trail, "--expect", head)
    assert code == 1 and "is not in the chain" in out, out


def test_prune_seals_and_what_remains_verifies(trail: str) -> None:
    code, out = _cli("audit", "prune", "--dsn", trail, "--older-than", "30d", "--vacuum")
    assert code == 0 and out.startswith("nothing written before"), out
    with PgAuditStore(trail) as store:
        report = store.prune(datetime.now(UTC) + timedelta(seconds=1), by="test")
        assert report.pruned and report.records == 24
        after = store.verify()
    assert after.ok and after.sealed is not None and after.records == 1, after.summary()
    code, out = _cli("audit", "stats", "--dsn", trail)
    assert code == 0 and "pruned" in out and "(test)" in out, out


def test_a_batch_already_stored_is_not_refused(pg_dsn: str) -> None:
    """The same batch again (as after a connection lost before its commit was acknowledged:
    it had committed) writes nothing and refuses nothing; of a batch of which only some records
    are stored, the writer writes the others one by one (the stored one neither written nor
    refused)."""
    records = _request(1)
    with AuditWriter(pg_dsn) as writer:
        asyncio.run(writer.asubmit_many(records))
        writer.flush()
        asyncio.run(writer.asubmit_many(records))
        writer.flush()
        assert (writer.stats.written, writer.stats.rejected) == (6, 0)
        asyncio.run(writer.asubmit_many([records[0], RequestRecord(id="new")]))
    assert (writer.stats.written, writer.stats.rejected) == (7, 0)
    assert _ids(pg_dsn) == [records[0].id, "new"]  # type: ignore[attr-defined]
    assert _cli("audit", "verify", "--dsn", pg_dsn)[0] == 0


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _closed_port() -> int:
    gate = TcpGate(1)  # bound, then shut: nothing listens there
    gate.down()
    return gate.port


def test_an_unreachable_server_fails_closed_with_a_clear_error(pg_dsn: str) -> None:
    dsn = _via(pg_dsn, _closed_port())
    with pytest.raises(StoreUnavailable, match=r"PostgreSQL postgresql://.*127\.0\.0\.1:\d+"):
        AuditWriter(dsn)
    code, out = _cli("audit", "verify", "--dsn", dsn)
    assert code == 2 and len(out.strip().splitlines()) == 1 and "cannot connect" in out, out
    code, out = _cli("ui", "--dsn", dsn)
    assert code == 1 and len(out.strip().splitlines()) == 1 and "cannot connect" in out, out


@pytest.fixture
def gate(pg_dsn: str) -> Iterator[TcpGate]:
    port = urlsplit(pg_dsn).port or 5432
    opened = TcpGate(port)
    yield opened
    opened.down()


def _wait(predicate: object, what: str) -> None:
    """Wait on ``predicate`` (checked whenever the writer may have moved on)."""
    done = threading.Event()
    for _ in range(6000):
        if predicate():  # type: ignore[operator]
            return
        done.wait(0.01)  # re-check a state another thread changes (no event to wait on)
    raise AssertionError(f"never: {what}")


@pytest.mark.parametrize("process", [False, True], ids=["thread", "child process"])
def test_an_outage_refuses_new_requests_loses_nothing_and_recovers(
    pg_dsn: str, gate: TcpGate, tmp_path: Path, process: bool
) -> None:
    dsn = _via(pg_dsn, gate.port)
    writer = AuditWriter(
        dsn, journal=tmp_path / "journal", batch_size=10, max_delay=0, process=process
    )
    for i in range(5):
        writer.write_ahead(Answer(f"before-{i}"))
        asyncio.run(writer.asubmit(Answer(f"before-{i}")))
    writer.flush()
    gate.down()  # the server goes away, with the writer's connection
    writer.write_ahead(Answer("in-flight"))  # answered while the outage is not known yet
    asyncio.run(writer.asubmit(Answer("in-flight")))
    _wait(lambda: writer.unavailable is not None, "the writer sees the outage")
    with pytest.raises(AuditWriteError, match="refused until it is back"):
        writer.check()  # a new request is refused: fail closed
    asyncio.run(writer.asubmit(Answer("late")))  # a request admitted before, finishing now
    gate.up()
    _wait(lambda: writer.stats.written == 7, "the held records are written")
    writer.check()  # requests are admitted again
    writer.close()
    assert writer.stats.outages == 1 and writer.stats.failed == 0
    assert sorted(_ids(pg_dsn)) == sorted([f"before-{i}" for i in range(5)] + ["in-flight", "late"])
    assert _cli("audit", "verify", "--dsn", pg_dsn)[0] == 0


def test_a_replica_stopped_during_an_outage_stores_its_journal_at_the_next_start(
    pg_dsn: str, gate: TcpGate, tmp_path: Path
) -> None:
    dsn, folder = _via(pg_dsn, gate.port), tmp_path / "journal"
    writer = AuditWriter(dsn, journal=folder, batch_size=10, max_delay=0)
    writer.write_ahead(Answer("stored"))
    asyncio.run(writer.asubmit(Answer("stored")))
    writer.flush()
    killed = tmp_path / "as-killed"
    shutil.copytree(folder, killed)  # the journal as a kill -9 leaves it: "stored" still in it
    gate.down()
    for name in ("a", "b"):
        writer.write_ahead(Answer(name))
        asyncio.run(writer.asubmit(Answer(name)))
    _wait(lambda: writer.unavailable is not None, "the writer sees the outage")
    with pytest.raises(AuditWriteError):
        writer.close()  # stopped while the server is away: it gives up, the journal stays
    assert writer.stats.failed == 2
    with pytest.raises(StoreUnavailable):
        AuditWriter(dsn, journal=folder)  # a restart while it is still away: fail closed
    gate.up()
    again = AuditWriter(dsn, journal=folder)
    assert again.stats.recovered == 2  # "stored" was stored before: not twice
    again.close()
    assert not list(folder.iterdir())
    replayed = AuditWriter(dsn, journal=killed)  # replaying what was stored changes nothing
    assert replayed.stats.recovered == 0
    replayed.close()
    assert sorted(_ids(pg_dsn)) == ["a", "b", "stored"]
    assert _cli("audit", "verify", "--dsn", pg_dsn)[0] == 0
