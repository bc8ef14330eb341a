"""Answers fingerprinted with their labels, off the client's wait.

An answer is fingerprinted with its label once its verdict is in, so that it keeps its label
when it comes back as an input: relayed by another agent, or resent with a conversation.

- Registering an answer (``add``) is all that happens before it leaves; its text is
  fingerprinted and stored by one writer thread, in order, as many answers per transaction
  as are waiting (a transaction's fixed cost, about 0.3 ms here, is then paid once for all
  of them). An answer stored lately (the same text with the same label) needs no thread.
- Labeling waits (``settled``) for the pending answers it could find: those sharing a word
  k-gram with its texts, since a match needs a shared fingerprint, the hash of one
  (``Guard.could_reidentify``; ``unsettled`` names them, without waiting). When the writer
  falls behind (``max_pending`` answers), everybody waits for all of them.
- The writer thread runs at the lowest priority (``_background``).
- An answer that ends up not sent is stored all the same (a label is never lowered by that).
- A failure is kept in ``failure``: the guard then refuses every later request.
- A shared store that cannot be reached (``StateUnavailable``: PostgreSQL down) is an outage,
  not a failure: the answers stay queued and are written again every ``RETRY_SECONDS``; while
  ``outage`` is set the guard refuses requests (503), and once they are written it serves
  again. No answer's fingerprints are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from labelgate.guard.engine import Guard
from labelgate.guard.labels import Label
from labelgate.guard.state import StateUnavailable

log = logging.getLogger("labelgate.proxy")

_Queued = tuple[str, Label, str, tuple[str, ...], "asyncio.Future[None]"]
_LATELY = 1024  # answers known to be stored, by (text, label), up to this size
_LATELY_CHARS = 32_768
WRITER_NICENESS = 19
RETRY_SECONDS = 1.0


def _background() -> None:
    """The writer thread's work is background work: it takes the CPU time that handling
    requests leaves. Linux gives each thread its own nice value (``setpriority`` with the
    thread's id). Measured side by side in the bench (new prompts, each request right after
    the last, so the previous answer is stored while the next request is handled): -0.1 to
    -0.4 ms at the median non-streamed, -0.2 to -0.9 ms for the first streamed token, and no
    loss of throughput with 8 or 32 clients (docs/performance.md, round 8). Not SCHED_IDLE,
    as the audit process: this thread shares the GIL with the event loop, and an idle-class
    thread put off while holding it stalls the loop (the p99s went up)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)


class AnswerFingerprints:
    def __init__(self, guard: Guard, *, max_pending: int = 8) -> None:
        self._guard = guard
        self._max_pending = max_pending
        self._pending: dict[asyncio.Future[None], str] = {}  # settled when stored, with text
        self._queue: list[_Queued] = []
        self._lately: OrderedDict[tuple[str, Label], None] = OrderedDict()  # stored lately
        self._writing = False
        self._writer = ThreadPoolExecutor(
            1, thread_name_prefix="labelgate-fingerprints", initializer=_background
        )
        self.failure: BaseException | None = None
        self.outage: StateUnavailable | None = None  # the store unreachable: retrying
        self._outage_began = asyncio.Event()  # set while ``outage`` is

    def add(
        self, text: str, label: Label, agent: str, borrowed: tuple[str, ...] = ()
    ) -> asyncio.Future[None]:
        """Register an answer as pending (on the loop: requests see it from now on); the
        future is done once it is stored (or could not be: ``failure``).
        ``borrowed``: its prompt's own words, which it may quote without owning them."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        self._pending[stored] = text
        loop.call_soon(self._enqueue, text, label, agent, borrowed, stored)
        return stored

    async def written(self, stored: asyncio.Future[None]) -> None:
        """Once ``stored`` is done; ``StateUnavailable`` as soon as the store is found out of
        reach instead (the answer stays queued, but whoever waits for it is refused now)."""
        if not stored.done() and self.outage is None:
            outage = asyncio.ensure_future(self._outage_began.wait())
            waits: list[asyncio.Future[Any]] = [stored, outage]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                outage.cancel()
        if not stored.done() and self.outage is not None:
            raise self.outage

    def unsettled(self, texts: Callable[[], list[str]]) -> list[asyncio.Future[None]]:
        """The pending answers that labeling ``texts()`` could find (every one when the writer
        is behind); the texts are asked for only when some answer is pending."""
        if not self._pending:
            return []
        if len(self._pending) >= self._max_pending:
            return list(self._pending)
        found, labeled = self._guard.could_reidentify, texts()
        return [stored for stored, answer in self._pending.items() if found(answer, labeled)]

    async def settled(self, texts: Callable[[], list[str]]) -> None:
        """Once the pending answers that labeling ``texts()`` could find are stored."""
        waits = self.unsettled(texts)
        if waits:
            await asyncio.wait(waits)

    async def aclose(self) -> None:
        """Once every pending answer is stored, the writer thread ends; during an outage of
        the store, after a few retries (what is left is logged)."""
        while self._pending:
            done, _ = await asyncio.wait(list(self._pending), timeout=5 * RETRY_SECONDS)
            if not done and self.outage is not None:
                log.error("%d answer(s) not fingerprinted: %s", len(self._pending), self.outage)
                break
        self._writer.shutdown()

    def _stored(self, stored: asyncio.Future[None]) -> None:
        # Out of the pending set at once (a done callback would leave it there for a loop
        # turn, and a request arriving meanwhile would wait that turn for nothing).
        self._pending.pop(stored, None)
        stored.set_result(None)

    def _enqueue(
        self,
        text: str,
        label: Label,
        agent: str,
        borrowed: tuple[str, ...],
        stored: asyncio.Future[None],
    ) -> None:
        try:
            # Nothing is fingerprinted here, on the loop: the writer thread does that. What is
            # not worth storing, or was stored lately (an answer often comes again), needs no
            # thread at all.
            needed = (text, label) not in self._lately and self._guard.worth_remembering(
                text, label
            )
        except Exception as exc:
            self.fail(exc, 1)
            needed = False
        if not needed:
            self._stored(stored)
            return
        self._queue.append((text, label, agent, borrowed, stored))
        if not self._writing:
            self._write_next()

    def _write_next(self) -> None:
        batch, self._queue = self._queue, []
        self._writing = True
        texts = [(text, label, agent) for text, label, agent, _, _ in batch]
        remember = partial(self._guard.remember_many, borrowed=[b for *_, b, _ in batch])
        loop = asyncio.get_running_loop()
        try:
            job = loop.run_in_executor(self._writer, remember, texts)
        except RuntimeError as exc:  # the writer is shut down (an answer after aclose)
            job = loop.create_future()
            job.set_exception(exc)
        job.add_done_callback(partial(self._written, batch))

    def _written(self, batch: list[_Queued], job: asyncio.Future[int]) -> None:
        self._writing = False
        error = asyncio.CancelledError() if job.cancelled() else job.exception()
        if isinstance(error, StateUnavailable):
            self._held_back(batch, error)
            return
        if self.outage is not None:
            log.warning("the fingerprint store is back: %d answer(s) written", len(batch))
            self.outage = None
            self._outage_began.clear()
        if error is not None:
            self.fail(error, len(batch))
        else:
            self._stored_lately(batch)
        for *_, stored in batch:
            self._stored(stored)
        if self._queue:
            self._write_next()

    def _held_back(self, batch: list[_Queued], error: StateUnavailable) -> None:
        """Keep the batch (first in line) and write it again later."""
        if self.outage is None:
            log.error("cannot store %d answer(s), retrying: %s", len(batch), error)
        self.outage = error
        self._outage_began.set()
        self._queue = batch + self._queue
        asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry)

    def _retry(self) -> None:
        if self._queue and not self._writing:
            self._write_next()

    def _stored_lately(self, batch: list[_Queued]) -> None:
        for text, label, *_ in batch:
            if len(text) <= _LATELY_CHARS:
                self._lately[(text, label)] = None
        while len(self._lately) > _LATELY:
            self._lately.popitem(last=False)  # the oldest: a miss only costs a thread hop

    def fail(self, error: BaseException, count: int = 1) -> None:
        """Keep the first failure: the guard refuses every later request."""
        log.error("could not fingerprint %d answer(s): %r", count, error, exc_info=error)
        self.failure = self.failure or error
