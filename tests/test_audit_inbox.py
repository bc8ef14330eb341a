"""The audit writer's inbox: woken only when the writer sleeps, bounded, flushes served at once."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from labelgate.guard.audit.inbox import Inbox


class _CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def _inbox(maxsize: int = 100, wake_at: int = 10) -> tuple[Inbox, _CountingEvent]:
    inbox = Inbox(maxsize, wake_at)
    event = _CountingEvent()
    inbox._wake = event  # the one event a producer may set
    return inbox, event


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_busy_writer_is_not_woken_by_each_item() -> None:
    inbox, event = _inbox()
    for n in range(5):
        inbox.put(n)
    assert event.sets == 0  # nobody sleeps: the items wait for the writer
    assert [inbox.pop() for _ in range(6)] == [0, 1, 2, 3, 4, None]


def test_an_idle_writer_is_woken_by_the_first_item() -> None:
    inbox, event = _inbox()
    waiter = _in_thread(inbox.wait_for_item)
    _until(lambda: inbox._idle)
    inbox.put("first")
    waiter.join(5)
    assert not waiter.is_alive() and event.sets == 1
    inbox.put("second")  # the writer is awake now
    assert event.sets == 1


def test_a_lingering_writer_is_woken_by_a_full_batch_or_an_urgent_item() -> None:
    inbox, event = _inbox(wake_at=3)
    started = time.monotonic()
    lingering = _in_thread(lambda: inbox.linger(30))
    _until(lambda: inbox._lingering)
    inbox.put(1)
    inbox.put(2)
    assert event.sets == 0
    inbox.put(3)  # a batch's worth
    lingering.join(5)
    assert not lingering.is_alive() and time.monotonic() - started < 5
    inbox, event = _inbox(wake_at=3)
    lingering = _in_thread(lambda: inbox.linger(30))
    _until(lambda: inbox._lingering)
    inbox.put("flush", urgent=True)
    lingering.join(5)
    assert not lingering.is_alive()


def test_an_urgent_item_before_the_linger_cuts_it_short() -> None:
    inbox, _ = _inbox()
    inbox.put("flush", urgent=True)
    started = time.monotonic()
    inbox.linger(30)
    assert time.monotonic() - started < 5


def test_a_full_inbox_holds_producers_back() -> None:
    inbox, _ = _inbox(maxsize=2)
    inbox.put(1)
    inbox.put(2)
    with pytest.raises(queue.Full):
        inbox.put(3, timeout=0.05)
    waiting = _in_thread(lambda: inbox.put(3))
    time.sleep(0.05)
    assert waiting.is_alive() and len(inbox) == 2
    assert inbox.pop() == 1  # room: the producer goes on
    waiting.join(5)
    assert not waiting.is_alive()
    assert [inbox.pop(), inbox.pop(), inbox.pop()] == [2, 3, None]
