"""The audit writer's bounded queue, which wakes the writer only when it has nothing to do.

``queue.Queue`` wakes its consumer on every ``put``: a futex call, then a thread asking for the
GIL, for every request a server records. Here a producer appends to a deque (atomic under the
GIL) and sets the wake-up event only when the writer sleeps with nothing to do, when enough
items wait for a full batch, or when it asks to be served at once (a flush, the stop). A busy
writer takes what piled up in its own time. A full inbox makes producers wait for room
(back-pressure), as ``queue.Queue`` does, and raises ``queue.Full`` when that times out.

Several producer threads may each see room and append at once, so the depth may pass
``maxsize`` by at most the number of producer threads; one event loop never does.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque


class Inbox:
    def __init__(self, maxsize: int, wake_at: int) -> None:
        """``wake_at``: a sleeping writer is woken once this many items wait."""
        self.maxsize = maxsize
        self.wake_at = wake_at
        self._items: deque[object] = deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._idle = False  # the writer waits for a first item
        self._lingering = False  # the writer waits for a batch to fill
        self._urgent = False  # an item that must not wait for the batch window came in

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    # ------------------------------------------------------------------ producers
    def put(self, item: object, timeout: float | None = None, *, urgent: bool = False) -> None:
        """Append, waiting up to ``timeout`` for room (None: as long as it takes)."""
        if self.full():
            self._wait_for_room(timeout)
        self._items.append(item)
        if urgent:
            self._urgent = True
        if urgent or self._idle or (self._lingering and len(self._items) >= self.wake_at):
            self._wake.set()  # a writer that is busy takes the item in its own time

    def _wait_for_room(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            while self.full():
                self._wake.set()  # a full inbox must not wait for the writer's batch window
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Full
                self._room.wait(remaining)

    # ------------------------------------------------------------------ the writer
    def pop(self) -> object | None:
        """The oldest item, or None when there is none."""
        try:
            item = self._items.popleft()
        except IndexError:
            return None
        if len(self._items) == self.maxsize - 1:  # there was no room: someone may wait
            with self._room:
                self._room.notify_all()
        return item

    def wait_for_item(self) -> None:
        """Sleep until there is an item."""
        while not self._items:
            self._wake.clear()
            self._idle = True
            try:
                if not self._items:  # a producer that saw _idle False appended before this
                    self._wake.wait()
            finally:
                self._idle = False

    def linger(self, seconds: float) -> None:
        """Sleep ``seconds`` to let a batch fill, unless a producer asks for the writer."""
        self._wake.clear()
        self._lingering = True
        try:
            if not self._urgent and len(self._items) < self.wake_at:
                self._wake.wait(seconds)
        finally:
            self._lingering = False
            self._urgent = False
