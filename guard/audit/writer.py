"""The audit writer: a bounded inbox drained by one thread that writes in batches.

Guarantees:

- ``submit`` never touches the disk on the caller's thread; it only enqueues.
  ``asubmit_many`` enqueues a request's records as one item. The writer thread is woken only
  when it is idle (``guard.audit.inbox``): a busy writer costs its producers no system call.
- The queue is bounded: when it is full, ``submit`` blocks (``asubmit`` awaits without blocking
  the event loop) until the writer catches up. Back-pressure, never silent loss.
- Batches of up to ``batch_size`` records (or what arrived within ``max_delay``) go to disk in
  one transaction each, so a crash leaves whole batches only.
- ``flush`` waits until everything submitted before it is on disk; ``close`` flushes and stops.
- A batch that cannot be written is retried; a record that can never be written (a duplicate
  id, say) is logged and counted in ``stats.rejected``; if the store itself keeps failing, the
  writer stops and every later ``submit``, ``flush`` and ``close`` raises ``AuditWriteError``.
- With a ``journal`` folder, ``write_ahead`` appends records to a write-ahead journal
  (``guard.audit.journal``) on the caller's thread before they are submitted, so that they
  survive the process being killed; a new writer first stores what an earlier one left there.
- A store out of reach (``StoreUnavailable``: PostgreSQL down, its connection lost) is an
  outage, not a failure: the writer holds the batch and retries it, backing off, until the
  store takes it; meanwhile ``check`` raises (the server admits no new request: fail closed)
  while what is in flight is still journaled and queued, and written once the store is back.
- With a ``retention``, the thread prunes the records older than it (``AuditStore.prune``,
  sealed) before its first batch and then at most every ``prune_every`` seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel

from labelgate.guard.audit.backend import AuditBackend, open_store
from labelgate.guard.audit.errors import (
    AuditOutage,
    AuditWriteError,
    RecordRejected,
    StoreUnavailable,
)
from labelgate.guard.audit.inbox import Inbox
from labelgate.guard.audit.journal import Journal, journal_key, replay
from labelgate.guard.audit.process import StoreProcess
from labelgate.guard.audit.records import AuditRecord, DeferredRecords, Submitted

log = logging.getLogger(__name__)

# A record the store refuses for good: SQLite's error, or any backend's ``RecordRejected``.
REJECTED = (sqlite3.IntegrityError, RecordRejected)
OUTAGE_BACKOFF = (0.05, 2.0)  # seconds between attempts while the store is out of reach


class WriterStats(BaseModel):
    submitted: int = 0
    written: int = 0
    batches: int = 0
    rejected: int = 0  # records the store refused one by one (logged)
    failed: int = 0  # records not written because the store kept failing (raised, logged)
    blocked_submits: int = 0  # submits that waited for room in the queue
    max_queue_depth: int = 0
    queued: int = 0  # at the time the stats were taken
    recovered: int = 0  # journal entries an earlier process left, stored at start
    pruned: int = 0  # records deleted by the retention (``retention``), sealed
    outages: int = 0  # times the store went out of reach (``StoreUnavailable``) and came back


@dataclass(slots=True)
class _Flush:
    done: threading.Event


@dataclass(slots=True)
class _Many:
    """Records submitted together: one queue slot, one wake-up of the writer thread."""

    records: list[AuditRecord]


_STOP = object()


class AuditWriter:
    def __init__(
        self,
        store: AuditBackend | str | Path,
        *,
        maxsize: int = 10_000,
        batch_size: int = 500,
        max_delay: float = 0.05,
        retries: int = 3,
        on_batch: Callable[[int], None] | None = None,
        process: bool = False,
        journal: Path | None = None,
        retention: timedelta | None = None,
        prune_every: float = 3600.0,
    ) -> None:
        """``store`` is owned by the writer from now on (closed by ``close``): an
        ``AuditBackend``, or what ``open_store`` opens (a SQLite path, a PostgreSQL URL).

        ``on_batch`` is called on the writer thread after each committed batch (for tests and
        benchmarks that want to slow the writer down or watch it). ``process``: batches are
        written by a child process (``guard.audit.process``), so the Python work of writing
        does not hold this process's GIL; ``store`` stays open here for reading. ``journal``:
        a folder for the write-ahead journal (``write_ahead``); what an earlier writer left
        there is stored before this one starts. ``retention``: records written longer ago
        are pruned (``AuditStore.prune``) by the writer's thread, before its first batch and
        then at most every ``prune_every`` seconds while records come in.
        """
        self.store = open_store(store) if isinstance(store, str | Path) else store
        self._sink: AuditBackend | StoreProcess = (
            StoreProcess(self.store.target) if process else self.store
        )
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.retries = retries
        self._on_batch = on_batch
        self._inbox = Inbox(maxsize, wake_at=batch_size)
        self._stats = WriterStats()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._outage: StoreUnavailable | None = None  # the store is out of reach now
        self._stopping = threading.Event()  # close() asked: give up waiting for the store
        self._delay = OUTAGE_BACKOFF[0]
        self._closed = False
        self.retention = retention
        self.prune_every = prune_every
        self._next_prune = time.monotonic()
        self._journal = Journal(journal) if journal is not None else None
        if self._journal is not None:
            self._recover(self._journal)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        # A clean interpreter exit flushes too, even if the owner forgot to close.
        atexit.register(self.close)

    # ------------------------------------------------------------------ caller side
    def submit(self, record: AuditRecord, timeout: float | None = None) -> None:
        """Enqueue one record, waiting for room when the queue is full (back-pressure)."""
        self._accepting()
        if self._inbox.full():
            with self._lock:
                self._stats.blocked_submits += 1
        self._inbox.put(record, timeout)  # raises queue.Full on timeout
        self._count_submit()

    @property
    def journals(self) -> bool:
        """Whether ``write_ahead`` can journal (the writer was given a journal folder)."""
        return self._journal is not None

    def write_ahead(self, records: DeferredRecords) -> None:
        """Journal ``records`` (one write, on this thread) so that they are stored even if this
        process dies before the writer gets to them; submit them later as usual, or submit
        others under the same ``journal_key``, which stand for them. Raises ``AuditWriteError``
        when the journal cannot take them (disk full): what they record must not happen.
        (An outage of the store does not stop it: the journal holds them until it is back.)"""
        self._accepting()
        key = records.journal_key
        if self._journal is None or key is None:
            raise AuditWriteError("this audit writer has no journal for these records")
        try:
            self._journal.append(records, key)
        except OSError as exc:
            raise AuditWriteError(f"audit journal: {exc}") from exc

    def _recover(self, journal: Journal) -> None:
        """Store what an earlier process journaled and may not have written (at most once:
        an entry already in the store is refused as a duplicate), then forget it."""
        leftovers = journal.leftovers()
        if not leftovers:
            return
        items = replay(leftovers)
        for item in items:
            try:
                if not self._sink.write_batch([item]):
                    continue  # stored before the process died (a backend that says so)
            except REJECTED:
                continue  # stored before the process died
            self._stats.recovered += 1
        log.warning(
            "audit journal: %d of %d entries left by an earlier process were not stored; "
            "stored now",
            self._stats.recovered,
            len(items),
        )
        for path in leftovers:
            path.unlink()

    async def asubmit(self, record: Submitted) -> None:
        """``submit`` for async code: waits for room on a worker thread, not the event loop.

        ``record`` may be ``DeferredRecords``: one queue slot, built by the writer (in its
        child process with ``process=True``), written in one batch."""
        count = len(record) if isinstance(record, DeferredRecords) else 1
        await self._aput(record, count)

    async def asubmit_many(self, records: Sequence[AuditRecord]) -> None:
        """``asubmit`` for several records (e.g. one request's), waking the writer once.

        They take one slot of the queue, so back-pressure counts them as one item, and they
        reach the store in the same batch (one transaction).
        """
        if records:
            await self._aput(_Many(list(records)), len(records))
        else:
            self._accepting()

    async def _aput(self, item: object, count: int) -> None:
        self._accepting()
        if self._inbox.full():
            with self._lock:
                self._stats.blocked_submits += 1
            await asyncio.to_thread(self._inbox.put, item)
        else:
            self._inbox.put(item)
        self._count_submit(count)

    def flush(self, timeout: float | None = None) -> None:
        """Return once every record submitted before this call is committed."""
        self.check()
        marker = _Flush(threading.Event())
        self._inbox.put(marker, timeout, urgent=True)
        if not marker.done.wait(timeout):
            raise TimeoutError("audit writer did not flush in time")
        self.check()

    def close(self, timeout: float | None = None) -> None:
        """Write everything still queued, stop the thread and close the store."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        atexit.unregister(self.close)
        if self._thread.is_alive():
            self._inbox.put(_STOP, urgent=True)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            if self._journal is not None:
                self._journal.close()  # keeps segments with entries not stored
            if isinstance(self._sink, StoreProcess):
                self._sink.close()
            self.store.close()
        if self._error is not None:
            raise AuditWriteError(f"audit writer failed: {self._error}") from self._error

    @property
    def stats(self) -> WriterStats:
        with self._lock:
            return self._stats.model_copy(update={"queued": len(self._inbox)})

    def check(self) -> None:
        """Raise ``AuditWriteError`` when no new request may be admitted: the writer failed,
        is closed, or its store is out of reach (until it is back)."""
        self._accepting()
        outage = self._outage
        if outage is not None:
            raise AuditOutage(
                f"{outage}; requests are refused until it is back (records in flight are "
                "journaled and written then)"
            ) from outage

    @property
    def unavailable(self) -> StoreUnavailable | None:
        """The error of the store's current outage, or None when it takes records."""
        return self._outage

    def _accepting(self) -> None:
        """Raise ``AuditWriteError`` when records can no longer be accepted at all."""
        if self._error is not None:
            raise AuditWriteError(f"audit writer failed: {self._error}") from self._error
        if self._closed:
            raise AuditWriteError("audit writer is closed")

    def _count_submit(self, n: int = 1) -> None:
        depth = len(self._inbox)
        with self._lock:
            self._stats.submitted += n
            self._stats.max_queue_depth = max(self._stats.max_queue_depth, depth)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, flushes, stopping = self._collect()
            if batch and self._error is None:
                self._prune_when_due()
                self._write(batch)
            elif batch:
                self._count_failed(batch)
            for marker in flushes:
                marker.done.set()

    def _collect(self) -> tuple[list[Submitted], list[_Flush], bool]:
        """Wait for one item, then gather more until the batch is full or max_delay passed.

        A flush marker or the stop sentinel ends the batch at once: nothing waits for them.
        """
        batch: list[Submitted] = []
        size = 0  # records, deferred ones counted
        self._inbox.wait_for_item()
        deadline = time.monotonic() + self.max_delay
        while size < self.batch_size:
            item = self._inbox.pop()
            if item is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._inbox.linger(remaining)
            elif item is _STOP:
                return batch, [], True
            elif isinstance(item, _Flush):
                return batch, [item], False
            elif isinstance(item, _Many):
                batch.extend(item.records)
                size += len(item.records)
            else:
                batch.append(item)  # type: ignore[arg-type]
                size += len(item) if isinstance(item, DeferredRecords) else 1
        return batch, [], False

    def _write(self, batch: list[Submitted]) -> None:
        attempt = 0
        while attempt <= self.retries:
            try:
                try:
                    written = self._sink.write_batch(batch)
                except REJECTED:
                    written = self._write_one_by_one(batch)
            except StoreUnavailable as exc:
                if not self._wait_for_store(exc, batch):
                    return
                continue  # the same batch again: nothing of it was committed
            except Exception as exc:  # disk full, locked for too long, ...
                log.warning("audit batch failed (attempt %d): %s", attempt + 1, exc)
                if attempt == self.retries:
                    log.error("audit writer stopping: %s", exc)
                    self._error = exc
                    self._count_failed(batch)
                    return
                time.sleep(0.05 * 2**attempt)
                attempt += 1
                continue
            self._store_back()
            with self._lock:
                self._stats.written += written
                self._stats.batches += 1
            if self._journal is not None:  # written or refused for good: not needed any more
                self._journal.stored([k for k in map(journal_key, batch) if k is not None])
            if self._on_batch is not None:
                try:
                    self._on_batch(written)
                except Exception:  # a watcher must not stop the writer
                    log.exception("audit on_batch callback failed")
            return

    def _wait_for_store(self, exc: StoreUnavailable, batch: list[Submitted]) -> bool:
        """An outage: refuse new requests (``check``), wait a while (backing off), and say
        whether to try again; False once ``close`` gave up on the store (the batch is
        counted failed; its journaled records stay in the journal for the next start)."""
        if self._outage is None:
            log.error("audit store out of reach, refusing requests until it is back: %s", exc)
            self._delay = OUTAGE_BACKOFF[0]
        self._outage = exc
        if self._stopping.wait(self._delay):
            self._error = exc
            self._count_failed(batch)
            return False
        self._delay = min(self._delay * 2, OUTAGE_BACKOFF[1])
        return True

    def _store_back(self) -> None:
        if self._outage is not None:
            log.warning("audit store back: %s resolved", self._outage)
            self._outage = None
            with self._lock:
                self._stats.outages += 1

    def _prune_when_due(self) -> None:
        """Apply the retention, on this thread (between batches: no write waits on it but
        the child's, for one transaction). A failure is logged; recording goes on."""
        if self.retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_every
        days = self.retention / timedelta(days=1)
        try:
            report = self.store.prune(
                datetime.now(UTC) - self.retention, by=f"retention: {days:g} days"
            )
        except Exception as exc:  # locked for too long, disk full, ...
            log.error("audit retention: prune failed: %s", exc)
            return
        if report.pruned:
            log.info("audit retention: %s", report.summary())
            with self._lock:
                self._stats.pruned += report.records

    def _count_failed(self, batch: list[Submitted]) -> None:
        count = sum(len(r) if isinstance(r, DeferredRecords) else 1 for r in batch)
        log.error("audit writer could not write %d records", count)
        with self._lock:
            self._stats.failed += count

    def _write_one_by_one(self, batch: list[Submitted]) -> int:
        written = 0
        for record in batch:  # deferred records: all of them or none
            try:
                written += self._sink.write_batch([record])
            except REJECTED as exc:
                what = (
                    type(record).__name__
                    if isinstance(record, DeferredRecords)
                    else f"{record.table} {record.key()}"
                )
                log.error("audit record rejected (%s): %s", what, exc)
                with self._lock:
                    self._stats.rejected += (
                        len(record) if isinstance(record, DeferredRecords) else 1
                    )
        return written

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
