"""The audit store in a child process, for the writer of a latency-sensitive server.

Turning records into rows (JSON), hashing the chain and binding SQLite parameters is Python
work that holds the GIL. On the writer's thread it competes with the server's event loop: a
loop that releases the GIL for a system call may wait a whole switch interval to get it back.
Here the writer thread only pickles each batch's field values (and ``DeferredRecords`` as
they are, for the child to build) and waits on a pipe (GIL released) while a child process
writes them with its own ``AuditStore`` connection, in the same one-transaction-per-batch
way. ``StoreProcess.write_batch`` has the store's contract: it returns the count written,
raises ``sqlite3.IntegrityError`` for a rejected record (the writer then retries one by one),
``StoreUnavailable`` when the store is out of reach (PostgreSQL: the child connects again on
the next batch) and ``AuditStoreError`` for anything else.

The child is ``python -m labelgate.guard.audit.process`` (a plain subprocess: nothing
depends on how the parent was started), told its store (a SQLite path or a PostgreSQL URL,
``guard.audit.backend.open_store``) in the environment (``TARGET_ENV``: a URL's password
stays out of the process list), fed length-prefixed pickles on its stdin and answering
on its stdout. It exits when its stdin closes, including when its parent is killed: the batch it was
writing is committed or rolled back whole, as in the thread.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from labelgate.guard.audit.errors import RecordRejected, StoreUnavailable
from labelgate.guard.audit.records import (
    AuditRecord,
    DecisionRecord,
    DeferredRecords,
    LabelEventRecord,
    MessageRecord,
    RequestRecord,
    SpanRecord,
    Submitted,
)

RECORD_TYPES: dict[str, type[AuditRecord]] = {
    cls.table: cls
    for cls in (RequestRecord, MessageRecord, LabelEventRecord, DecisionRecord, SpanRecord)
}
_LENGTH = struct.Struct(">I")
DEFERRED = ""  # the table name under which a ``DeferredRecords`` travels
BACKGROUND_NICENESS = 10
TARGET_ENV = "LABELGATE_AUDIT_TARGET"


class AuditStoreError(RuntimeError):
    """The child process could not write a batch (or is gone)."""


def send_frame(out: IO[bytes], data: bytes) -> None:
    out.write(_LENGTH.pack(len(data)) + data)
    out.flush()


def read_frame(source: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = source.read(size)
    if len(data) < size:
        return None
    return data


class StoreProcess:
    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        # The child imports this package from where the parent found it.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        env[TARGET_ENV] = self.target
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to, self._from = self._process.stdin, self._process.stdout

    def write_batch(self, records: Sequence[Submitted]) -> int:
        # Field values, not models: pickling a dict is C code, a pydantic model's state is not.
        # Deferred records go as they are, to be built here in the child.
        payload = [
            (DEFERRED, r) if isinstance(r, DeferredRecords) else (r.table, r.__dict__)
            for r in records
        ]
        try:
            send_frame(self._to, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
            answer = read_frame(self._from)
        except OSError as exc:
            raise AuditStoreError(f"the audit process is gone ({exc!r})") from exc
        if answer is None:
            raise AuditStoreError(f"the audit process is gone (exit {self._process.poll()})")
        status, value = pickle.loads(answer)
        if status == "ok":
            return int(value)
        if status == "integrity":
            raise sqlite3.IntegrityError(value)
        if status == "unavailable":
            raise StoreUnavailable(value)
        raise AuditStoreError(value)

    def close(self, timeout: float | None = 30.0) -> None:
        try:
            self._to.close()  # end of input: the child finishes and exits
            self._process.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        self._from.close()


def _background() -> None:
    """Writing the trail is background work: it should take the CPU time the server and its
    callers leave, and catch up in batches (a full queue holds the server back, so nothing is
    lost when it falls behind).

    Linux's SCHED_IDLE does that best: the scheduler counts a CPU running only this process
    as free, so a process it wakes (the server's client, its upstream) goes there instead of
    preempting the server on its own CPU; the writer still gets a small share under full
    load, so it cannot starve. Elsewhere, a lower priority (nice)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(BACKGROUND_NICENESS)


def serve(target: str, source: IO[bytes], out: IO[bytes]) -> None:
    """The child: write each batch received and answer (status, value), until end of input."""
    from labelgate.guard.audit.backend import is_dsn, open_store

    if not is_dsn(target):
        # Not for PostgreSQL: there a batch holds the chain's lock that every replica's writer
        # takes (guard.audit.pgstore), and a child starved by its own server's load while
        # holding it would stall the whole fleet's trail. Its CPU is small: it mostly waits.
        _background()
    with open_store(target) as store:
        while (data := read_frame(source)) is not None:
            send_frame(out, pickle.dumps(_write(store, pickle.loads(data))))


def _write(store: Any, payload: list[tuple[str, Any]]) -> tuple[str, Any]:
    try:
        fields: list[tuple[type[AuditRecord], dict[str, Any]]] = []
        for table, value in payload:
            if table == DEFERRED:
                fields += [(type(r), r.__dict__) for r in value.records()]
            else:
                fields.append((RECORD_TYPES[table], value))
        return "ok", store.write_fields(fields)
    except (sqlite3.IntegrityError, RecordRejected) as exc:
        return "integrity", str(exc)
    except StoreUnavailable as exc:
        return "unavailable", str(exc)
    except Exception as exc:  # reported to the writer, which retries, then stops
        return "error", f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    serve(os.environ[TARGET_ENV], sys.stdin.buffer, sys.stdout.buffer)
