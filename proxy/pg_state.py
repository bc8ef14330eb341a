"""``state.backend: postgres``: what replicas share, in one PostgreSQL database.

- the fingerprint store: ``PostgresFingerprintStore`` (guard/fingerprint/pg_store.py);
- pending approvals: ``PostgresApprovals`` (proxy/pg_approvals.py);
- per-key limits: ``PostgresLimits`` (proxy/pg_limits.py).

This object owns the proxy's async connection pool (psycopg_pool) and one listener connection
(``LISTEN labelgate_approvals``) that wakes the requests held for an approval when any replica
answers one. It is built before the server starts (connecting and migrating: an unreachable
server is one readable line at start-up); ``start`` opens the pool and the background tasks on
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from labelgate.guard.fingerprint import FingerprintStore
from labelgate.guard.fingerprint.pg_store import PostgresFingerprintStore
from labelgate.guard.labels import Lattice
from labelgate.guard.postgres import CONNECT_TIMEOUT, connect, migrate, redacted, unavailable
from labelgate.proxy.approvals import ApprovalQueue
from labelgate.proxy.config import GuardSettings
from labelgate.proxy.errors import ProxyError, state_unavailable
from labelgate.proxy.pg_approvals import APPROVALS_CHANNEL, PostgresApprovals
from labelgate.proxy.pg_approvals import MIGRATIONS as APPROVAL_MIGRATIONS
from labelgate.proxy.pg_limits import MIGRATIONS as LIMIT_MIGRATIONS
from labelgate.proxy.pg_limits import PostgresLimits
from labelgate.proxy.shared import SharedState

log = logging.getLogger("labelgate.proxy")
_RETRY = 1.0  # seconds between reconnection attempts of the listener
POOL_SIZE = 8


def state_error(dsn: str, exc: BaseException) -> ProxyError:
    """A request that needs the shared state while it fails: 503, OpenAI-style."""
    return state_unavailable(unavailable(dsn, exc, "reach the shared state"))


class PostgresState(SharedState):
    """The fingerprint store, approvals and key limits of every replica naming ``dsn``."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        # One name per process: its concurrency slots are renewed while it lives (pg_limits).
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        with connect(dsn) as conn:
            try:
                migrate(conn, "approvals", APPROVAL_MIGRATIONS)
                migrate(conn, "limits", LIMIT_MIGRATIONS)
            except psycopg.Error as exc:
                raise unavailable(dsn, exc, "set up the shared tables") from None
        self._pool: AsyncConnectionPool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: list[PostgresApprovals] = []
        self._stores: list[PostgresFingerprintStore] = []
        self._listening = False  # the approvals listener is connected
        self._limits = PostgresLimits(self)
        self.limits = self._limits

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise ProxyError(
                503,
                "the shared state is not open yet",
                type="service_unavailable",
                code="state_unavailable",
            )
        return self._pool

    def error(self, exc: BaseException) -> ProxyError:
        return state_error(self.dsn, exc)

    def fingerprints(self, settings: GuardSettings, lattice: Lattice) -> FingerprintStore:
        store = PostgresFingerprintStore(self.dsn, lattice, postings=settings.fingerprint_postings)
        self._stores.append(store)
        return store

    def problem(self) -> str | None:
        for store in self._stores:
            if not store.in_step:
                return f"PostgreSQL {redacted(self.dsn)}: the fingerprint index is not in step"
        if self._pool is not None and not self._listening:
            return f"PostgreSQL {redacted(self.dsn)}: the approvals listener is reconnecting"
        return None

    def approvals(self, timeout: float) -> ApprovalQueue:
        queue = PostgresApprovals(self, timeout)
        self._queues.append(queue)
        return queue

    async def start(self) -> None:
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            open=False,
            check=AsyncConnectionPool.check_connection,  # replaces one an outage broke
            name="labelgate-state",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            raise unavailable(self.dsn, exc) from None
        self._pool = pool
        listening = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(listening), name="labelgate-approvals-listen"),
            asyncio.create_task(self._limits.renew_forever(), name="labelgate-slots"),
        ]
        # the first LISTEN is in place before requests come (answers are not missed)
        waiter = asyncio.create_task(listening.wait())
        await asyncio.wait(
            [waiter, self._tasks[0]],
            timeout=CONNECT_TIMEOUT * 2,
            return_when=asyncio.FIRST_COMPLETED,
        )
        waiter.cancel()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            with contextlib.suppress(psycopg.Error, PoolTimeout):
                await self._limits.forget_replica()  # its slots, at once rather than at expiry
            await self._pool.close()

    async def run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
        """``work(conn)`` on a pooled connection; a database failure is a 503."""
        try:
            async with self.pool.connection() as conn:
                return await work(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.error(exc) from None

    async def _listen(self, listening: asyncio.Event) -> None:
        """LISTEN for answers; after a (re)connect, every held request checks its row, so an
        answer given while the connection was down is not missed."""
        reported = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
                async with conn:
                    await conn.execute(f"LISTEN {APPROVALS_CHANNEL}")
                    listening.set()
                    self._listening = True
                    reported = False
                    for queue in self._queues:
                        queue.wake_all()
                    async for notify in conn.notifies():
                        for queue in self._queues:
                            queue.wake(notify.payload)
            except psycopg.Error as exc:
                self._listening = False
                if not reported:
                    log.error("approvals listener lost PostgreSQL %s: %s", redacted(self.dsn), exc)
                    reported = True
                await asyncio.sleep(_RETRY)
