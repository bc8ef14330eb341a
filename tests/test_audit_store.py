"""The audit store: migrations, batch writes, full-text search, the hash chain, crash safety."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlite_utils import Database

from labelgate.guard.audit.chain import hashed_row, record_hash
from labelgate.guard.audit.contents import content_sha256
from labelgate.guard.audit.records import (
    AuditRecord,
    DecisionRecord,
    LabelEventRecord,
    MessageRecord,
    RequestRecord,
    SpanRecord,
    dumps,
    stdlib_dumps,
)
from labelgate.guard.audit.schema import GENESIS_HASH, MIGRATIONS, applied_migrations, migrate
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.items import LabeledItem, LabelOrigin, LabelReason
from labelgate.guard.labels import Lattice

LATTICE = Lattice()


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    with AuditStore(tmp_path / "audit.db") as s:
        yield s


def _request_with_messages(texts: list[str]) -> list:
    request = RequestRecord(model="local/smollm2", agent="planner", session_id="s1")
    messages = [
        MessageRecord(request_id=request.id, position=i, role="user", content=text)
        for i, text in enumerate(texts)
    ]
    return [request, *messages]


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    assert migrate(db) == []
    assert applied_migrations(db) == [m.__name__ for m in MIGRATIONS]
    rows = list(db.query("select name, applied from _migrations"))
    assert all(r["applied"] for r in rows)
    assert {"requests", "messages", "decisions", "spans", "ledger", "label_events"} <= set(
        db.table_names()
    )
    # Reopening through the store applies nothing new and keeps the data.
    AuditStore(tmp_path / "m.db").close()
    assert len(list(db.query("select * from _migrations"))) == len(MIGRATIONS)


def test_store_opens_in_wal_mode(store: AuditStore) -> None:
    assert store.db.journal_mode == "wal"
    assert store.db.execute("pragma synchronous").fetchone()[0] == 1  # NORMAL


def test_write_batch_and_queries(store: AuditStore) -> None:
    item = LabeledItem(
        "the quarterly numbers",
        LATTICE.label("confidential", "trusted", sources=["tool:crm"]),
        role="tool",
        name="crm",
        provenance=[LabelReason(LabelOrigin.SOURCE_RULE, "crm is confidential", rule="r1")],
    )
    request = RequestRecord(
        model="m", label=LATTICE.label("confidential"), decision="deny", status="denied"
    )
    records = [
        request,
        MessageRecord.from_item(item, request.id, 0),
        DecisionRecord(
            request_id=request.id,
            sink="tool:send_email",
            action="deny",
            rule_chain=[{"rule": "no-exfil", "effect": "deny"}],
            reason="confidential data may not leave by email",
        ),
        LabelEventRecord(item_id=item.id, origin="source_rule", detail="crm is confidential"),
    ]
    assert store.write_batch(records) == 4
    row = store.get_request(request.id)
    assert row is not None and row["decision"] == "deny" and row["seq"] == 1
    assert '"confidentiality":"confidential"' in row["label_json"]
    [message] = store.messages_for(request.id)
    assert message["item_id"] == item.id and message["role"] == "tool"
    assert '"rule":"r1"' in message["provenance_json"]
    [decision] = store.list_decisions(request_id=request.id, action="deny")
    assert decision["reason"].startswith("confidential data")
    assert store.list_decisions(action="allow") == []
    assert store.counts()["ledger"] == 4
    assert store.head()[0] == 4


def test_full_text_search_finds_message_text(store: AuditStore) -> None:
    store.write_batch(_request_with_messages(["please wire the money", "hello there"]))
    store.write_batch(_request_with_messages(["Wiring instructions attached"]))
    hits = store.search_messages("wire")  # porter stemming: wire ~ wiring
    assert sorted(h["content"] for h in hits) == [
        "Wiring instructions attached",
        "please wire the money",
    ]
    assert store.search_messages("absent") == []
    # Quoted by default: FTS syntax characters in user input are not an error.
    assert store.search_messages('money"') == [
        h for h in store.search_messages("money") if h["content"] == "please wire the money"
    ]


def test_verify_ok_on_a_clean_chain(store: AuditStore) -> None:
    for _ in range(3):
        store.write_batch(_request_with_messages(["a", "b"]))
    report = store.verify()
    assert report.ok, report.summary()
    assert report.records == 9
    assert report.counts["messages"] == 6 and report.counts["requests"] == 3
    assert report.head_hash == store.head()[1]
    assert report.summary().startswith("OK: 9 records verified")


def test_empty_store_verifies(store: AuditStore) -> None:
    report = store.verify()
    assert report.ok and report.records == 0 and report.head_hash == GENESIS_HASH


def test_changed_content_is_detected_and_named(store: AuditStore) -> None:
    records = _request_with_messages(["transfer 10 EUR", "thanks"])
    store.write_batch(records)
    store.write_batch(_request_with_messages(["later"]))
    target = records[1]
    with _raw(store.path) as conn:  # its text, stored once in contents
        conn.execute(
            "update contents set text = 'transfer 10000 EUR' where sha256 = "
            "(select content_sha256 from messages where id = ?)",
            [target.id],
        )
    report = store.verify()
    assert not report.ok
    assert report.broken is not None
    assert (report.broken.seq, report.broken.table, report.broken.row_key) == (
        2,
        "messages",
        target.id,
    )
    assert "changed" in report.broken.problem
    assert report.records == 1


def test_rehashed_row_is_still_caught_by_the_ledger(store: AuditStore) -> None:
    records = _request_with_messages(["original"])
    store.write_batch(records)
    with _raw(store.path) as conn:  # another text, and the row's hash recomputed over it
        full = conn.execute("select * from messages").fetchone()
        names = [d[0] for d in conn.execute("select * from messages").description]
        row = dict(zip(names, full, strict=True))
        forged = hashed_row(row, "forged")
        new_hash = record_hash(row["prev_hash"], "messages", forged)
        conn.execute(
            "insert into contents (sha256, size, text) values (?, 6, 'forged')",
            [content_sha256("forged")],
        )
        conn.execute(
            "update messages set content_sha256 = ?, hash = ?", [content_sha256("forged"), new_hash]
        )
    report = store.verify()
    assert not report.ok and report.broken is not None
    assert report.broken.table == "messages" and "ledger" in report.broken.problem


def test_deleted_row_is_detected_and_named(store: AuditStore) -> None:
    records = _request_with_messages(["one", "two", "three"])
    store.write_batch(records)
    with _raw(store.path) as conn:
        conn.execute("delete from messages where id = ?", [records[2].id])
    report = store.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.table, report.broken.row_key) == (
        3,
        "messages",
        records[2].id,
    )
    assert "missing" in report.broken.problem


def test_deleted_row_and_ledger_entry_is_detected(store: AuditStore) -> None:
    store.write_batch(_request_with_messages(["one", "two", "three"]))
    with _raw(store.path) as conn:
        conn.execute("delete from messages where seq = 2")
        conn.execute("delete from ledger where seq = 2")
    report = store.verify()
    assert report.broken is not None and report.broken.seq == 2
    assert "ledger" in report.broken.problem


def test_reordered_rows_are_detected(store: AuditStore) -> None:
    records = _request_with_messages(["first", "second", "third"])
    store.write_batch(records)
    with _raw(store.path) as conn:  # swap the places of two messages in the chain
        conn.execute("update messages set seq = -1 where seq = 2")
        conn.execute("update messages set seq = 2 where seq = 3")
        conn.execute("update messages set seq = 3 where seq = -1")
    report = store.verify()
    assert report.broken is not None
    assert report.broken.seq == 2 and report.broken.table == "messages"


def test_inserted_row_is_detected(store: AuditStore) -> None:
    records = _request_with_messages(["real"])
    store.write_batch(records)
    with _raw(store.path) as conn:
        conn.execute(
            "insert into messages (id, request_id, position, content, seq, prev_hash, hash) "
            "values ('fake', ?, 9, 'injected', 99, 'x', 'y')",
            [records[0].id],
        )
    report = store.verify()
    assert report.broken is not None
    assert (report.broken.table, report.broken.row_key) == ("messages", "fake")
    assert "no ledger entry" in report.broken.problem


def test_expected_head_must_be_in_the_chain(store: AuditStore) -> None:
    store.write_batch(_request_with_messages(["a"]))
    anchor = store.verify().head_hash
    store.write_batch(_request_with_messages(["b"]))
    assert store.verify(expect_hash=anchor).ok
    report = store.verify(expect_hash="f" * 64)
    assert not report.ok and "not in the chain" in str(report.broken)


def test_spans_chain_with_composite_keys(store: AuditStore) -> None:
    span = SpanRecord(
        trace_id="a" * 32, span_id="b" * 16, name="chat m", start_ns=1, end_ns=2, kind="client"
    )
    store.write_batch([span])
    assert store.spans_for("a" * 32)[0]["name"] == "chat m"
    assert store.verify().ok
    with _raw(store.path) as conn:
        conn.execute("update spans set end_ns = 3")
    report = store.verify()
    assert report.broken is not None and report.broken.row_key == f"{'a' * 32}:{'b' * 16}"


def test_two_stores_on_one_file_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with AuditStore(path) as first, AuditStore(path) as second:
        for i in range(5):
            (first if i % 2 else second).write_batch(_request_with_messages([f"m{i}"]))
        report = first.verify()
    assert report.ok and report.records == 10


def test_adding_a_nullable_column_keeps_old_hashes_valid(store: AuditStore) -> None:
    store.write_batch(_request_with_messages(["before the migration"]))

    def m900_add_column(db: Database) -> None:
        db["messages"].add_column("language", str)

    assert migrate(store.db, [*MIGRATIONS, m900_add_column]) == ["m900_add_column"]
    assert store.verify().ok


def test_a_batch_is_all_or_nothing(store: AuditStore) -> None:
    request = RequestRecord()
    store.write_batch([request])
    duplicate = RequestRecord(id=request.id)
    with pytest.raises(sqlite3.IntegrityError):
        store.write_batch([*_request_with_messages(["x"]), duplicate])
    assert store.counts()["messages"] == 0 and store.counts()["ledger"] == 1
    assert store.verify().ok


_CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from labelgate.guard.audit.records import MessageRecord, RequestRecord
    from labelgate.guard.audit.store import AuditStore

    store = AuditStore(sys.argv[1])
    written = 0
    while True:
        request = RequestRecord()
        batch = [request] + [
            MessageRecord(request_id=request.id, position=i, content="filler text " * 40)
            for i in range(int(sys.argv[2]) - 1)
        ]
        written += store.write_batch(batch)
        print(written, flush=True)
    """
)


def test_kill_9_leaves_a_consistent_database(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    batch = 400
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, str(path), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    last = 0
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= 8 * batch:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert last >= 8 * batch
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    with AuditStore(path) as store:
        counts = store.counts()
        report = store.verify()
    assert report.ok, report.summary()
    assert counts["ledger"] >= last  # every reported commit survived
    assert counts["ledger"] % batch == 0  # and no batch survived in part
    assert counts["requests"] == counts["ledger"] // batch


_TRICKY = ["", "é中😀", "\u2028\u2029\ufeff", '\x00\x1f\x7f\n\t"\\/', "a" * 3000]


@pytest.mark.parametrize("text", _TRICKY)
def test_fast_json_writes_what_the_standard_library_wrote(text: str) -> None:
    value = {text: [text, 1, -2, None, True, False, 2**63 - 1], "b": {"z": {}, "a": []}}
    assert dumps(value) == stdlib_dumps(value)


def test_what_orjson_refuses_still_encodes() -> None:
    assert dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    assert dumps({1: "x"}) == stdlib_dumps({1: "x"})


@pytest.mark.parametrize("duration", [None, 1e-05, 2.5, 1e16])
def test_row_hashes_are_those_of_stores_written_before(duration: float | None) -> None:
    """Rows of stores written with the standard library's JSON still verify."""
    row = {"id": "r1", "status": "ok", "label_json": '{"c":"secret"}', "duration_ms": duration}
    fields = {k: v for k, v in row.items() if v is not None} | {"_table": "requests"}
    before = hashlib.sha256(("0" * 64 + stdlib_dumps(fields)).encode()).hexdigest()
    assert record_hash("0" * 64, "requests", row) == before


@pytest.mark.parametrize(
    "record",
    [
        RequestRecord(label=LATTICE.label("secret", "trusted"), duration_ms=1.5),
        MessageRecord(request_id="r", position=0, provenance=[{"a": [1, None]}]),
        DecisionRecord(sink="tool:x", action="deny", rule_chain=[{"rule": "r", "ok": True}]),
        SpanRecord(trace_id="a" * 32, span_id="b" * 16, name="n", start_ns=1, end_ns=2),
    ],
)
def test_rows_from_field_values_are_the_rows_pydantic_would_give(record: AuditRecord) -> None:
    """``row_of`` (what the audit process writes) skips pydantic's JSON dump of the record."""
    expected = {}
    for name, value in record.model_dump(mode="json").items():
        if name in record.json_fields:
            expected[f"{name}_json"] = None if value is None else stdlib_dumps(value)
        else:
            expected[name] = int(value) if isinstance(value, bool) else value
    assert record.to_row() == expected
