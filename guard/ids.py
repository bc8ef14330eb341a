"""Random identifiers for requests, decisions, items and records, minted cheaply.

``uuid.uuid4()`` makes one ``getrandom`` system call per id, and a system call releases the
GIL: on a busy proxy the event loop can then wait for another thread (the audit writer) for a
whole switch interval. Here the operating system's randomness is read 4 KiB at a time and
sliced, so ids stay unpredictable (drawn from ``os.urandom``) at one system call per 256 ids.
"""

from __future__ import annotations

import os
import threading

_CHUNK = 4096
_ID_BYTES = 16


class _RandomPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._offset + n > len(self._buffer):
                self._buffer, self._offset = os.urandom(_CHUNK), 0
            start = self._offset
            self._offset += n
            return self._buffer[start : self._offset]


_pool = _RandomPool()


def new_id() -> str:
    """32 hex digits (128 random bits), the form of ``uuid.uuid4().hex``."""
    return _pool.take(_ID_BYTES).hex()


def _reset_after_fork() -> None:
    # A forked child must not reuse the parent's unread random bytes.
    global _pool
    _pool = _RandomPool()


os.register_at_fork(after_in_child=_reset_after_fork)
