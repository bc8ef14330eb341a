"""A write-ahead journal for the audit writer: no answer without its record, even on kill -9.

A server answers before its audit records are written (the writer batches them off the
request's path). What it answered must still be recorded if the process dies before the writer
caught up, so before an answer leaves, its records (``DeferredRecords``, cheap to pickle) are
appended to a journal file with one ``write`` on an ``O_APPEND`` descriptor: from then on they
are in the kernel's page cache, which outlives the process (not the machine: there is no
``fsync`` per answer, see docs/security.md). The writer then stores them as usual; a journal
segment whose entries are all in the store is deleted.

At the next start, ``replay`` reads what is left (a frame torn by the kill ends the file) and
the writer stores it before anything else. Entries carry a key (a request id): the last entry
of a key stands for the earlier ones, so a stream journals an "interrupted" record before its
first byte and its real record before its last, and only one is ever stored.

Frames: 4-byte big-endian length, 4-byte CRC-32 of the payload, the payload (a pickle).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labelgate.guard.audit.records import DeferredRecords, Submitted

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">II")
SEGMENT_BYTES = 16 * 1024 * 1024  # a new segment once the current one is this large


class JournalError(OSError):
    """The journal could not take an entry (disk full, unwritable): the answer must not leave."""


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int | None
    size: int = 0
    pending: set[str] = field(default_factory=set)  # keys journaled here, not yet stored


def journal_key(item: Submitted) -> str | None:
    """The key an entry is journaled under (None: not journaled)."""
    return item.journal_key if isinstance(item, DeferredRecords) else None


class Journal:
    """Segments ``<folder>/<stem>.<n>.journal``, appended to by the server's threads and
    pruned by the writer's thread as entries reach the store."""

    def __init__(self, folder: Path, stem: str = "audit", segment_bytes: int = SEGMENT_BYTES):
        self.folder = folder
        self.stem = stem
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        self._keys: dict[str, _Segment] = {}  # where each pending key was last journaled
        self._lock = threading.Lock()  # appends on the server's threads, pruning on the writer's
        self._next = max((_number(p) for p in self.leftovers()), default=0) + 1

    def leftovers(self) -> list[Path]:
        """Segments left by an earlier process, oldest first (call before ``append``)."""
        return sorted(self.folder.glob(f"{self.stem}.*.journal"), key=_number)

    def append(self, item: Submitted, key: str) -> None:
        """Journal ``item`` under ``key`` (one write); raises ``JournalError`` if it cannot."""
        payload = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _HEAD.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            segment, fd = self._writable(len(frame))
            try:
                written = os.write(fd, frame)
            except OSError as exc:
                raise JournalError(
                    exc.errno, f"audit journal {segment.path}: {exc.strerror}"
                ) from exc
            segment.size += written
            if written != len(frame):  # a short write on a full disk: the frame is torn
                raise JournalError(f"audit journal {segment.path}: short write (disk full?)")
            segment.pending.add(key)
            self._keys[key] = segment

    def stored(self, keys: list[str]) -> None:
        """These keys' records are in the store: their entries are no longer needed."""
        with self._lock:
            for key in keys:
                segment = self._keys.pop(key, None)
                if segment is not None:
                    segment.pending.discard(key)
            self._prune()

    def close(self) -> None:
        """Close every segment; delete those whose entries are all stored."""
        with self._lock:
            for segment in self._segments:
                if segment.fd is not None:
                    os.close(segment.fd)
                    segment.fd = None
            self._prune(everything=True)

    def _writable(self, size: int) -> tuple[_Segment, int]:
        """The segment to append ``size`` bytes to, and its descriptor (a new segment when the
        current one would grow past ``segment_bytes``)."""
        current = self._segments[-1] if self._segments else None
        if current is not None and current.fd is not None:
            if current.size + size <= self.segment_bytes or current.size == 0:
                return current, current.fd
            os.close(current.fd)
            current.fd = None
        path = self.folder / f"{self.stem}.{self._next}.journal"
        self._next += 1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(exc.errno, f"audit journal {path}: {exc.strerror}") from exc
        self._segments.append(_Segment(path, fd))
        self._prune()  # the one just closed may be all stored already
        return self._segments[-1], fd

    def _prune(self, everything: bool = False) -> None:
        """Delete closed (or, with ``everything``, any) segments with nothing pending."""
        keep = []
        for segment in self._segments:
            done = not segment.pending and (everything or segment.fd is None)
            if done:
                segment.path.unlink(missing_ok=True)
            else:
                keep.append(segment)
        self._segments = keep


def replay(paths: list[Path]) -> list[Submitted]:
    """The entries of ``paths`` (oldest first) to store: the last of each key, in journal
    order; a torn or corrupt frame ends its segment (it was being written when the process
    died)."""
    last: dict[str, Submitted] = {}
    for path in paths:
        for item in _frames(path):
            key = journal_key(item)
            if key is not None:
                last.pop(key, None)  # re-inserted: ordered by its last entry
                last[key] = item
    return list(last.values())


def _frames(path: Path) -> Iterator[Submitted]:
    data = path.read_bytes()
    at = 0
    while at + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, at)
        payload = data[at + _HEAD.size : at + _HEAD.size + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            log.warning("audit journal %s: torn frame at byte %d ignored", path, at)
            return
        try:
            item = pickle.loads(payload)
        except Exception as exc:  # written by another version of labelgate, say
            log.error("audit journal %s: entry at byte %d unreadable: %s", path, at, exc)
        else:
            yield item
        at += _HEAD.size + size


def _number(path: Path) -> int:
    try:
        return int(path.name.split(".")[-2])
    except (IndexError, ValueError):
        return 0
