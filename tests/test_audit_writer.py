"""The audit writer: off-thread batching, back-pressure without loss, flush and close."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from labelgate.guard.audit.records import AuditRecord, MessageRecord, RequestRecord
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriteError, AuditWriter


def _messages(n: int, request_id: str = "r1") -> list[MessageRecord]:
    return [MessageRecord(request_id=request_id, position=i, content=f"m{i}") for i in range(n)]


def _count(path: Path, table: str = "ledger") -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


class _RecordingStore(AuditStore):
    """Remembers which thread wrote and how big each batch was."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: set[str] = set()
        self.sizes: list[int] = []

    def write_batch(self, records: Sequence[AuditRecord]) -> int:
        self.threads.add(threading.current_thread().name)
        self.sizes.append(len(records))
        return super().write_batch(records)


def test_submit_never_writes_on_the_callers_thread(tmp_path: Path) -> None:
    store = _RecordingStore(tmp_path / "a.db")
    with AuditWriter(store, batch_size=50) as writer:
        for record in _messages(120):
            writer.submit(record)
    assert store.threads == {"audit-writer"}
    assert max(store.sizes) <= 50
    assert _count(tmp_path / "a.db") == 120


def test_records_are_batched(tmp_path: Path) -> None:
    store = _RecordingStore(tmp_path / "a.db")
    writer = AuditWriter(store, batch_size=100, max_delay=0.5)
    for record in _messages(300):
        writer.submit(record)
    writer.close()
    stats = writer.stats
    assert stats.written == 300 and stats.submitted == 300
    assert stats.batches == len(store.sizes) < 300 / 10  # grouped, not one per record


def test_back_pressure_blocks_and_loses_nothing(tmp_path: Path) -> None:
    writer = AuditWriter(
        tmp_path / "a.db", maxsize=5, batch_size=4, on_batch=lambda n: time.sleep(0.02)
    )
    total = 120
    started = time.perf_counter()
    for record in _messages(total):
        writer.submit(record)
    elapsed = time.perf_counter() - started
    writer.close()
    stats = writer.stats
    assert stats.blocked_submits > 0
    assert stats.max_queue_depth <= 5
    # The caller was held back by the slow writer: ~30 batches of 20 ms.
    assert elapsed > 0.3
    assert stats.submitted == stats.written == total
    assert stats.rejected == stats.failed == 0
    assert _count(tmp_path / "a.db", "messages") == total
    with AuditStore(tmp_path / "a.db") as store:
        assert store.verify().ok


def test_submit_with_timeout_raises_when_full(tmp_path: Path) -> None:
    gate = threading.Event()
    writer = AuditWriter(
        tmp_path / "a.db", maxsize=1, batch_size=1, on_batch=lambda n: gate.wait(10)
    )
    writer.submit(RequestRecord())  # taken by the writer, which then waits on the gate
    time.sleep(0.1)
    writer.submit(RequestRecord())  # fills the queue
    with pytest.raises(queue.Full):
        writer.submit(RequestRecord(), timeout=0.1)
    gate.set()
    writer.close()
    assert writer.stats.written == 2


async def test_asubmit_waits_without_blocking_the_event_loop(tmp_path: Path) -> None:
    writer = AuditWriter(
        tmp_path / "a.db", maxsize=2, batch_size=1, on_batch=lambda n: time.sleep(0.02)
    )
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def producer() -> None:
        for record in _messages(30):
            await writer.asubmit(record)
        done.set()

    await asyncio.gather(ticker(), producer())
    await asyncio.to_thread(writer.close)
    assert writer.stats.blocked_submits > 0
    assert ticks > 20  # the loop kept running during ~0.5 s of back-pressure
    assert writer.stats.written == 30


def test_close_flushes_without_waiting_for_the_batch_window(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "a.db", batch_size=10_000, max_delay=30)
    for record in _messages(50):
        writer.submit(record)
    started = time.perf_counter()
    writer.close()
    assert time.perf_counter() - started < 5
    assert _count(tmp_path / "a.db") == 50
    with pytest.raises(AuditWriteError, match="closed"):
        writer.submit(RequestRecord())


def test_flush_makes_records_visible_to_readers(tmp_path: Path) -> None:
    with AuditWriter(tmp_path / "a.db", max_delay=30) as writer:
        for record in _messages(7):
            writer.submit(record)
        writer.flush(timeout=5)
        assert _count(tmp_path / "a.db") == 7


def test_duplicate_records_are_rejected_loudly_and_others_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = RequestRecord()
    with AuditWriter(tmp_path / "a.db", max_delay=0.2) as writer:
        writer.submit(request)
        writer.submit(RequestRecord(id=request.id))  # same primary key: a caller's bug
        for record in _messages(3):
            writer.submit(record)
    assert writer.stats.rejected == 1
    assert writer.stats.written == 4
    assert "rejected" in caplog.text
    with AuditStore(tmp_path / "a.db") as store:
        assert store.verify().ok


class _BrokenStore(AuditStore):
    def write_batch(self, records: Sequence[AuditRecord]) -> int:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_failing_store_stops_the_writer_loudly(tmp_path: Path) -> None:
    writer = AuditWriter(_BrokenStore(tmp_path / "a.db"), retries=1, max_delay=0.01)
    writer.submit(RequestRecord())
    with pytest.raises(AuditWriteError, match="disk I/O"):
        writer.flush(timeout=5)
    with pytest.raises(AuditWriteError):
        writer.submit(RequestRecord())
    assert writer.stats.failed == 1
    with pytest.raises(AuditWriteError):
        writer.close()


def test_concurrent_producers_keep_one_valid_chain(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / "a.db", maxsize=16, batch_size=8)

    def produce(n: int) -> None:
        for record in _messages(100, request_id=f"r{n}"):
            writer.submit(record)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    with AuditStore(tmp_path / "a.db") as store:
        report = store.verify()
    assert report.ok and report.records == 400


async def test_asubmit_many_writes_a_requests_records_in_one_batch(tmp_path: Path) -> None:
    store = _RecordingStore(tmp_path / "a.db")
    writer = AuditWriter(store, max_delay=0)
    await writer.asubmit_many(_messages(7))
    await writer.asubmit_many([])  # nothing to do, not an error
    await asyncio.to_thread(writer.close)
    assert store.sizes == [7]  # one queue item, one wake-up, one transaction
    assert writer.stats.submitted == writer.stats.written == 7
    assert _count(tmp_path / "a.db") == 7


async def test_asubmit_many_waits_for_room_without_losing_records(tmp_path: Path) -> None:
    writer = AuditWriter(
        tmp_path / "a.db", maxsize=1, batch_size=1, on_batch=lambda n: time.sleep(0.01)
    )
    for n in range(6):
        await writer.asubmit_many(_messages(3, request_id=f"r{n}"))
    await asyncio.to_thread(writer.close)
    assert writer.stats.blocked_submits > 0
    assert writer.stats.written == 18
    with pytest.raises(AuditWriteError):
        await writer.asubmit_many(_messages(1))  # closed: refused, not dropped silently
