"""The write-ahead journal: what a server answered is stored even if it dies before its
writer caught up; nothing is stored twice; a torn last frame is ignored; segments go once
stored; a journal that cannot be written refuses (fail closed)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tmpfs import fill, tmpfs

from labelgate.guard.audit.errors import AuditWriteError
from labelgate.guard.audit.journal import Journal, replay
from labelgate.guard.audit.records import AuditRecord, DeferredRecords, RequestRecord
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter


@dataclass
class Answer(DeferredRecords):
    """A request's records as a server journals them: built later, keyed by request id."""

    request_id: str
    status: str = "ok"

    def records(self) -> list[AuditRecord]:
        return [RequestRecord(id=self.request_id, status=self.status)]

    def __len__(self) -> int:
        return 1

    @property
    def journal_key(self) -> str:
        return self.request_id


def _statuses(db: Path) -> dict[str, str]:
    with AuditStore(db, readonly=True) as store:
        assert store.verify().ok
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("select id, status from requests").fetchall())


def _die(writer: AuditWriter) -> None:
    """What kill -9 leaves: the journal's files as they are, the writer never closed."""
    writer._closed = True  # no flush, no pruning: the process is gone


def test_the_last_entry_of_a_key_stands_for_the_others(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(Answer("a", "interrupted"), "a")
    journal.append(Answer("b"), "b")
    journal.append(Answer("a", "ok"), "a")
    items = replay(journal.leftovers())
    assert [(i.request_id, i.status) for i in items] == [("b", "ok"), ("a", "ok")]  # type: ignore[attr-defined]


def test_a_torn_last_frame_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append(Answer("a"), "a")
    journal.append(Answer("b"), "b")
    (segment,) = journal.leftovers()
    data = segment.read_bytes()
    segment.write_bytes(data[:-3])  # the process died in the middle of the second write
    assert [i.request_id for i in replay([segment])] == ["a"]  # type: ignore[attr-defined]
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    segment.write_bytes(bytes(corrupt))
    assert [i.request_id for i in replay([segment])] == ["a"]  # type: ignore[attr-defined]


def test_what_a_killed_writer_journaled_is_stored_at_the_next_start(tmp_path: Path) -> None:
    db, folder = tmp_path / "audit.db", tmp_path / "journal"
    writer = AuditWriter(db, journal=folder)
    writer.write_ahead(Answer("stored-before", "ok"))
    asyncio.run(writer.asubmit(Answer("stored-before", "ok")))
    writer.flush()
    writer.write_ahead(Answer("answered", "ok"))  # answered, then the process died
    writer.write_ahead(Answer("streaming", "interrupted"))  # a stream cut by the kill
    _die(writer)
    assert _statuses(db) == {"stored-before": "ok"}

    again = AuditWriter(db, journal=folder)
    assert again.stats.recovered == 2  # the one already stored is not stored twice
    again.close()
    assert _statuses(db) == {
        "stored-before": "ok",
        "answered": "ok",
        "streaming": "interrupted",
    }
    assert not list(folder.iterdir())  # recovered: the journal is gone


def test_segments_are_deleted_once_their_entries_are_stored(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    writer = AuditWriter(tmp_path / "audit.db", journal=folder)
    writer._journal.segment_bytes = 300  # type: ignore[union-attr]
    for i in range(20):
        answer = Answer(f"r{i}")
        writer.write_ahead(answer)
        asyncio.run(writer.asubmit(answer))
    writer.flush()
    assert len(list(folder.iterdir())) <= 1  # only the segment still open
    writer.close()
    assert not list(folder.iterdir())
    assert len(_statuses(tmp_path / "audit.db")) == 20


def test_an_unwritable_journal_refuses(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): see the tmpfs test")
        writer = AuditWriter(tmp_path / "audit.db", journal=folder)
        with pytest.raises(AuditWriteError, match="audit journal"):
            writer.write_ahead(Answer("a"))
        writer.close()
    finally:
        folder.chmod(0o700)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny", "256k") as mount:
        yield mount


def test_a_full_disk_refuses_the_answer(full_disk: Path, tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "audit.db", journal=full_disk / "journal")
    writer.write_ahead(Answer("fits"))
    fill(full_disk / "filler")
    big = Answer("x" * 8192)
    with pytest.raises(AuditWriteError, match="audit journal"):
        writer.write_ahead(big)
    asyncio.run(writer.asubmit(Answer("fits")))
    writer.close()
    assert set(_statuses(tmp_path / "audit.db")) == {"fits"}
