"""Bounded audit growth: each message text stored once (content-addressed, long ones compressed),
and retention: old records pruned under a seal, after which verify still passes for what
remains and the store shows that, when and how far it was pruned."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from proxy_fixtures import Guarded, fake, fake_url, passthrough_config  # noqa: F401 (fixtures)
from sqlite_utils import Database

from labelgate.guard.audit.chain import hashed_row, record_hash
from labelgate.guard.audit.cli import audit
from labelgate.guard.audit.contents import PACK_BYTES, content_sha256
from labelgate.guard.audit.query import AuditReader
from labelgate.guard.audit.records import AuditRecord, MessageRecord, RequestRecord
from labelgate.guard.audit.schema import GENESIS_HASH, MIGRATIONS, migrate
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter

SYSTEM = "You are the finance team's assistant. Never send money without a signed approval."


def _request(texts: Sequence[str | None]) -> list[AuditRecord]:
    request = RequestRecord(model="m", agent="a")
    return [request] + [
        MessageRecord(request_id=request.id, position=i, role="user", content=t)
        for i, t in enumerate(texts)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore(tmp_path / "audit.db") as opened:
        yield opened


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _count(store: AuditStore, sql: str, *params: Any) -> int:
    return int(store.db.execute(sql, params).fetchone()[0])


def _last_created(store: AuditStore) -> str:
    """When the last batch was written, as the ledger says (what prune compares)."""
    return str(store.db.execute("select max(created) from ledger").fetchone()[0])


# ---------------------------------------------------------------------- content-addressed


def test_the_same_text_twice_is_stored_once_and_both_records_verify(store: AuditStore) -> None:
    first, second = _request([SYSTEM, "What is due today?"]), _request([SYSTEM, "And tomorrow?"])
    store.write_batch(first)
    store.write_batch(second)
    assert _count(store, "select count(*) from contents where text = ?", SYSTEM) == 1
    assert _count(store, "select count(*) from contents") == 3
    refs = {
        r[0] for r in store.db.execute("select content_sha256 from messages where position = 0")
    }
    assert refs == {content_sha256(SYSTEM)}
    assert _count(store, "select count(*) from messages where content is not null") == 0
    for records in (first, second):
        assert [m["content"] for m in store.messages_for(records[0].id)] == [
            r.content for r in records[1:] if isinstance(r, MessageRecord)
        ]
    report = store.verify()
    assert report.ok and report.counts["messages"] == 4, report.summary()
    # the full-text index holds each text once, and finds every message using it
    assert {h["request_id"] for h in store.search_messages("signed approval")} == {
        first[0].id,
        second[0].id,
    }


def test_a_changed_shared_text_breaks_every_record_using_it(store: AuditStore) -> None:
    store.write_batch(_request(["before"]))
    users = [_request([SYSTEM, f"question {i}"]) for i in range(3)]
    for records in users:
        store.write_batch(records)
    with _raw(store.path) as conn:
        conn.execute(
            "update contents set text = ? where sha256 = ?",
            [SYSTEM.replace("Never", "Always"), content_sha256(SYSTEM)],
        )
    report = store.verify()
    assert not report.ok and report.broken is not None
    # the first record using it is named, with the text and how many messages use it
    assert (report.broken.table, report.broken.row_key) == ("messages", users[0][1].key())
    assert "was changed (used by 3 messages)" in report.broken.problem
    # and each of the three no longer matches its own hash, not only the first
    rows = store.db.execute(
        "select m.*, c.text from messages m join contents c on c.sha256 = m.content_sha256 "
        "where m.content_sha256 = ?",
        [content_sha256(SYSTEM)],
    )
    names = [d[0] for d in rows.description]
    found = [dict(zip(names, values, strict=True)) for values in rows]
    assert len(found) == 3
    for row in found:
        hashed = hashed_row({k: v for k, v in row.items() if k != "text"}, row["text"])
        assert record_hash(row["prev_hash"], "messages", hashed) != row["hash"]


def test_a_deleted_shared_text_is_named(store: AuditStore) -> None:
    store.write_batch(_request([SYSTEM]))
    with _raw(store.path) as conn:
        conn.execute("delete from contents")
    report = store.verify()
    assert report.broken is not None and "missing from contents" in report.broken.problem


def test_a_long_text_is_stored_once_compressed_and_read_back_whole(store: AuditStore) -> None:
    long = "".join(f"line {i}: the quarterly figures, again.\n" for i in range(20_000))
    assert len(long.encode()) > PACK_BYTES
    first, second = _request([long]), _request([long, None])
    store.write_batch(first)
    store.write_batch(second)
    size, text, packed = store.db.execute("select size, text, packed from contents").fetchone()
    assert size == len(long.encode()) and text is None and len(packed) < size // 10
    assert store.messages_for(second[0].id)[0]["content"] == long
    assert store.messages_for(second[0].id)[1]["content"] is None
    with AuditReader.open(store.path) as reader:
        assert reader.request(first[0].id).messages[0].content == long
    assert store.verify().ok


# ---------------------------------------------------------------------- retention


def _two_ages(store: AuditStore) -> tuple[list[list[AuditRecord]], list[list[AuditRecord]], str]:
    """Old requests, then new ones; the time that separates them (the first new batch's)."""
    old = [_request([SYSTEM, f"old {i}"]) for i in range(3)] + [_request(["only old"])]
    for records in old:
        store.write_batch(records)
    new = [_request([SYSTEM, f"new {i}"]) for i in range(2)]
    store.write_batch(new[0])
    cut_time = _last_created(store)
    store.write_batch(new[1])
    return old, new, cut_time


def test_prune_deletes_old_records_and_unused_texts_and_verify_passes(store: AuditStore) -> None:
    old, new, cut_time = _two_ages(store)
    old_records = sum(len(r) for r in old)
    cut_hash = store.db.execute("select hash from ledger where seq = ?", [old_records]).fetchone()[
        0
    ]

    report = store.prune(datetime.fromisoformat(cut_time), by="test")

    assert report.pruned and report.cut_seq == old_records and report.cut_hash == cut_hash
    assert report.deleted == {"requests": 4, "messages": 7, "contents": 4}  # "old 0-2", "only old"
    assert _count(store, "select count(*) from requests") == 2
    assert _count(store, "select min(seq) from ledger") == old_records + 1
    # the shared system prompt is still used by the new requests: kept
    assert _count(store, "select count(*) from contents where text = ?", SYSTEM) == 1
    assert _count(store, "select count(*) from contents where text like 'old%'") == 0
    for records in new:
        assert len(store.messages_for(records[0].id)) == 2
    verified = store.verify()
    assert verified.ok, verified.summary()
    assert verified.records == 2 * 3 + 1  # the new requests and the seal
    assert verified.sealed is not None and verified.sealed.cut_hash == cut_hash
    # FTS entries of deleted texts are gone with them
    assert store.search_messages("old") == []


def test_prune_leaves_a_visible_seal(store: AuditStore) -> None:
    _, _, cut_time = _two_ages(store)
    report = store.prune(datetime.fromisoformat(cut_time), by="labelgate audit prune")
    seal = store.seal()
    assert seal is not None
    assert (seal["id"], seal["cut_seq"], seal["cut_hash"]) == (
        report.seal_id,
        report.cut_seq,
        report.cut_hash,
    )
    assert seal["before"] == datetime.fromisoformat(cut_time).isoformat()
    assert seal["by"] == "labelgate audit prune" and seal["created"]
    assert '"messages":7' in seal["deleted_json"]
    assert seal["seq"] == _count(store, "select max(seq) from ledger")  # at the head
    summary = store.verify().summary()
    assert f"since the seal at seq {seal['seq']}" in summary and "pruned" in summary
    stats = CliRunner().invoke(audit, ["stats", "--db", str(store.path)])
    assert stats.exit_code == 0 and f"hash at the cut {report.cut_hash}" in stats.output


def test_pruning_nothing_is_a_no_op(store: AuditStore) -> None:
    store.write_batch(_request([SYSTEM]))
    head, counts = store.head(), store.counts()
    long_ago = datetime.now(UTC) - timedelta(days=365)
    report = store.prune(long_ago)
    assert not report.pruned and report.deleted == {}
    assert "nothing pruned" in report.summary()
    assert store.head() == head and store.counts() == counts and store.seal() is None
    # and again right after a prune: what it cut is not cut twice
    store.prune(datetime.now(UTC))
    head, counts = store.head(), store.counts()
    assert not store.prune(datetime.now(UTC)).pruned
    assert store.head() == head and store.counts() == counts


def test_a_store_pruned_twice_and_written_to_verifies(store: AuditStore) -> None:
    _, _, cut_time = _two_ages(store)
    store.prune(datetime.fromisoformat(cut_time))
    store.write_batch(_request([SYSTEM, "after the first prune"]))
    store.prune(datetime.now(UTC) + timedelta(seconds=1))  # everything, the first seal too
    assert _count(store, "select count(*) from requests") == 0
    store.write_batch(_request(["after the second"]))
    report = store.verify()
    assert report.ok and report.counts == {
        "decisions": 0,
        "label_events": 0,
        "messages": 1,
        "requests": 1,
        "seals": 1,
        "spans": 0,
    }, report.summary()
    seal = store.seal()
    assert seal is not None and seal["previous_cut_seq"] is not None
    assert _count(store, "select count(*) from contents") == 1


def test_tampering_around_a_seal_is_detected(tmp_path: Path) -> None:
    def pruned(name: str) -> AuditStore:
        store = AuditStore(tmp_path / name)
        _, _, cut_time = _two_ages(store)
        store.prune(datetime.fromisoformat(cut_time))
        return store

    # deleting the oldest records kept, as if the prune had cut further
    with pruned("more.db") as store:
        with _raw(store.path) as conn:
            conn.execute("delete from requests where seq = (select min(seq) from requests)")
            conn.execute("delete from ledger where seq = (select min(seq) from ledger)")
        report = store.verify()
        assert report.broken is not None and "missing from the ledger" in report.broken.problem

    # changing what the seal says
    with pruned("edited.db") as store:
        with _raw(store.path) as conn:
            conn.execute("update seals set cut_seq = cut_seq + 3")
        assert not store.verify().ok

    # removing the seal (and its ledger entry, at the head): the chain no longer starts
    with pruned("unsealed.db") as store:
        with _raw(store.path) as conn:
            conn.execute("delete from ledger where table_name = 'seals'")
            conn.execute("delete from seals")
        report = store.verify()
        assert report.broken is not None and "missing from the ledger" in report.broken.problem

    # a record put back among the pruned ones
    with pruned("inserted.db") as store:
        with _raw(store.path) as conn:
            conn.execute(
                "insert into requests (id, status, seq, prev_hash, hash) "
                "values ('planted', 'ok', 1, ?, 'x')",
                [GENESIS_HASH],
            )
        report = store.verify()
        assert report.broken is not None and "no ledger entry" in report.broken.problem


def test_expect_accepts_the_hash_at_the_cut(store: AuditStore) -> None:
    _, _, cut_time = _two_ages(store)
    report = store.prune(datetime.fromisoformat(cut_time))
    assert report.cut_hash is not None
    assert store.verify(expect_hash=report.cut_hash).ok
    assert not store.verify(expect_hash="0" * 63 + "1").ok


def test_the_prune_command(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditStore(path) as store:
        store.write_batch(_request([SYSTEM]))
    runner = CliRunner()
    kept = runner.invoke(audit, ["prune", "--db", str(path), "--older-than", "30d"])
    assert kept.exit_code == 0 and "nothing pruned" in kept.output, kept.output
    cut = datetime.now(UTC) + timedelta(seconds=1)
    done = runner.invoke(
        audit, ["prune", "--db", str(path), "--older-than", cut.isoformat(), "--vacuum"]
    )
    assert done.exit_code == 0 and done.output.startswith("pruned 2 records"), done.output
    verified = runner.invoke(audit, ["verify", "--db", str(path)])
    assert verified.exit_code == 0 and "since the seal" in verified.output
    bad = runner.invoke(audit, ["prune", "--db", str(path), "--older-than", "soon"])
    assert bad.exit_code == 1 and "--older-than" in bad.output
    missing = runner.invoke(audit, ["prune", "--db", str(tmp_path / "no.db"), "--older-than", "1d"])
    assert missing.exit_code == 2 and not (tmp_path / "no.db").exists()


def test_the_writer_applies_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditStore(path) as store:
        store.write_batch(_request([SYSTEM, "old"]))
    # retention 0: everything written before a batch is pruned as that batch is written
    # (one record: one batch, however the writer's thread is scheduled)
    writer = AuditWriter(path, retention=timedelta(0), prune_every=0)
    fresh = RequestRecord(model="m")
    writer.submit(fresh)
    writer.flush()
    assert writer.stats.pruned == 3
    writer.close()
    with AuditStore(path, readonly=True) as store:
        assert [r["id"] for r in store.db.query("select id from requests")] == [fresh.id]
        seal = store.seal()
        assert seal is not None and seal["by"] == "retention: 0 days"
        assert store.verify().ok


# ---------------------------------------------------------------------- migration


def _old_store(path: Path, batches: Sequence[Sequence[AuditRecord]]) -> None:
    """A store as labelgate wrote it before contents were shared: migrations 1-3, every
    message's text in its row, hashed as it stands."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn)
    migrate(db, MIGRATIONS[:3])
    seq, prev = 0, GENESIS_HASH
    for batch in batches:
        conn.execute("begin")
        for record in batch:
            seq += 1
            row = {**record.to_row(), "seq": seq}
            digest = record_hash(prev, record.table, row)
            row |= {"prev_hash": prev, "hash": digest}
            names = ", ".join(f'"{c}"' for c in row)
            marks = ", ".join("?" for _ in row)
            conn.execute(
                f"insert into {record.table} ({names}) values ({marks})", list(row.values())
            )
            conn.execute(
                "insert into ledger (seq, table_name, row_key, prev_hash, hash, created) "
                "values (?, ?, ?, ?, ?, ?)",
                [seq, record.table, record.key(), prev, digest, datetime.now(UTC).isoformat()],
            )
            prev = digest
        conn.execute("commit")
    conn.close()


def test_an_existing_store_migrates_and_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    long = "a long page of text. " * 20_000
    old = [_request([SYSTEM, f"question {i}", long if i == 0 else None]) for i in range(3)]
    _old_store(path, old)

    with AuditStore(path, readonly=True) as unmigrated:  # read as it is, before migrating
        before = unmigrated.verify()
        assert before.ok and before.records == 12
        assert unmigrated.messages_for(old[0][0].id)[2]["content"] == long
        assert unmigrated.search_messages("question")
    with AuditReader.open(path) as reader:  # the UI and trace read an old store too
        assert reader.request(old[1][0].id).messages[1].content == "question 1"

    with AuditStore(path) as store:  # migrates: texts move to contents, hashes unchanged
        assert _count(store, "select count(*) from messages where content is not null") == 0
        assert _count(store, "select count(*) from contents") == 5  # SYSTEM, 3 questions, long
        assert _count(store, "select count(*) from contents where packed is not null") == 1
        after = store.verify()
        assert after.ok and after.records == 12 and after.head_hash == before.head_hash
        assert [m["content"] for m in store.messages_for(old[0][0].id)] == [
            SYSTEM,
            "question 0",
            long,
        ]
        assert {h["request_id"] for h in store.search_messages("finance team")} == {
            r[0].id for r in old
        }
        store.write_batch(_request([SYSTEM, "after the migration"]))
        assert _count(store, "select count(*) from contents where text = ?", SYSTEM) == 1
        assert store.verify().ok
        # a moved text changed: the old record that held it is named
        with _raw(path) as conn:
            conn.execute("update contents set text = 'edited' where text = 'question 2'")
        report = store.verify()
        assert report.broken is not None and report.broken.row_key == old[2][2].key()


def test_the_server_applies_its_retention_setting(tmp_path: Path, fake_url: str) -> None:  # noqa: F811
    """``guard.audit_retention_days`` reaches the server's writer: a store left by an earlier
    run loses its old records (sealed) when the server records its first request."""
    state = tmp_path / "state"
    with AuditStore(state / "audit.db") as store:
        store.write_batch(_request([SYSTEM, "from an earlier run"]))
    guard = {"state_dir": str(state), "audit_retention_days": 1e-9}  # ~86 microseconds
    proxy = Guarded({**passthrough_config(fake_url), "guard": guard}, None)
    try:
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello"}]}
        response = httpx.post(f"{proxy.url}/chat/completions", json=body, timeout=30)
        assert response.status_code == 200, response.text
    finally:
        proxy.stop()  # the writer flushes and closes
    with AuditStore(state / "audit.db", readonly=True) as store:
        (request,) = store.db.query("select id from requests")
        assert request["id"] == response.headers["x-request-id"]
        seal = store.seal()
        assert seal is not None and seal["by"].startswith("retention: ")
        assert store.verify().ok


def test_retention_is_a_guard_setting() -> None:
    from labelgate.proxy.config import ConfigError, GuardSettings

    assert GuardSettings().audit_retention_days is None
    assert GuardSettings(audit_retention_days=30).audit_retention_days == 30
    with pytest.raises((ValueError, ConfigError)):
        GuardSettings(audit_retention_days=0)
