"""Per-key rate limits and concurrency caps in PostgreSQL: they hold across replicas.

- Rate: one token bucket row per key (``rate_buckets``), refilled and taken from in one atomic
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (the row lock orders concurrent takers; the
  update happens only when a whole token is there).
- Concurrency: one lease row per request in flight (``limit_leases``), counted and taken under a
  per-key advisory lock. A lease expires ``LEASE_SECONDS`` after its replica last renewed it
  (every ``RENEW_SECONDS``): the slots of a replica that dies are free again within
  ``LEASE_SECONDS``, those of one that stops cleanly at once.

Keys without limits never touch the database.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import PoolTimeout

from labelgate.proxy.auth import KeyState, Limits, Slot, rate_limited, too_many
from labelgate.proxy.config import RateLimit

if TYPE_CHECKING:
    from labelgate.proxy.pg_state import PostgresState

LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0
log = logging.getLogger("labelgate.proxy")

MIGRATIONS: tuple[str, ...] = (
    # 1: token buckets and concurrency leases
    """
    CREATE TABLE rate_buckets (
        key    text PRIMARY KEY,             -- the API key's sha256 (key_hash)
        tokens double precision NOT NULL,    -- after the last take
        stamp  timestamptz NOT NULL          -- of the last take
    );
    CREATE TABLE limit_leases (
        id      uuid PRIMARY KEY,            -- one request in flight
        key     text NOT NULL,
        replica text NOT NULL,               -- renews it while it lives
        expires timestamptz NOT NULL
    );
    CREATE INDEX limit_leases_key ON limit_leases (key, expires);
    CREATE INDEX limit_leases_replica ON limit_leases (replica);
    """,
)

# The tokens a bucket holds now: what it had, refilled since, at most the burst.
_REFILLED = "least(%(burst)s, b.tokens + extract(epoch FROM now() - b.stamp) * %(rate)s)"
_TAKE = f"""
    INSERT INTO rate_buckets AS b (key, tokens, stamp) VALUES (%(key)s, %(burst)s - 1, now())
    ON CONFLICT (key) DO UPDATE SET tokens = {_REFILLED} - 1, stamp = now()
    WHERE {_REFILLED} >= 1
    RETURNING tokens
"""
_LEFT = f"SELECT {_REFILLED} FROM rate_buckets b WHERE key = %(key)s"
_LEASE = """
    INSERT INTO limit_leases (id, key, replica, expires)
    SELECT %(id)s, %(key)s, %(replica)s, now() + make_interval(secs => %(ttl)s)
    WHERE (SELECT count(*) FROM limit_leases WHERE key = %(key)s AND expires > now()) < %(cap)s
    RETURNING id
"""


class _Free:
    """The slot of a key without a concurrency cap: nothing to give back."""

    def release(self) -> None:
        return None


_FREE = _Free()


class _Lease:
    def __init__(self, limits: PostgresLimits, lease: uuid.UUID) -> None:
        self._limits = limits
        self._lease: uuid.UUID | None = lease

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            self._limits.give_back(lease)


class PostgresLimits(Limits):
    def __init__(self, state: PostgresState) -> None:
        self._state = state
        self._returning: set[asyncio.Task[None]] = set()

    async def admit(self, key: KeyState) -> Slot:
        entry = key.entry
        if entry is None or (entry.rate_limit is None and entry.max_concurrency is None):
            return _FREE
        name, cap = entry.key_hash, entry.max_concurrency
        if entry.rate_limit is not None:
            wait = await self._state.run(lambda conn: self._take(conn, name, entry.rate_limit))
            if wait > 0:
                raise rate_limited(wait)
        if cap is None:
            return _FREE
        lease = uuid.uuid4()
        taken = await self._state.run(lambda conn: self._lease(conn, name, cap, lease))
        if not taken:
            raise too_many(cap)
        return _Lease(self, lease)

    async def _take(
        self, conn: psycopg.AsyncConnection[Any], name: str, limit: RateLimit | None
    ) -> float:
        """0.0 if a token was taken, else the seconds until one is due."""
        assert limit is not None
        args = {"key": name, "burst": float(limit.burst), "rate": limit.requests_per_second}
        cursor = await conn.execute(_TAKE, args)
        if await cursor.fetchone() is not None:
            return 0.0
        cursor = await conn.execute(_LEFT, args)
        row = await cursor.fetchone()
        left = float(row[0]) if row else 0.0
        return max(1.0 - left, 0.0) / limit.requests_per_second or 1e-3

    async def _lease(
        self, conn: psycopg.AsyncConnection[Any], name: str, cap: int, lease: uuid.UUID
    ) -> bool:
        async with conn.transaction():
            # count-then-insert must not interleave with another replica's for this key
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
            args = {
                "id": lease,
                "key": name,
                "replica": self._state.replica,
                "ttl": LEASE_SECONDS,
                "cap": cap,
            }
            cursor = await conn.execute(_LEASE, args)
            return await cursor.fetchone() is not None

    def give_back(self, lease: uuid.UUID) -> None:
        """Free a slot (off the request's path; a lease not deleted expires anyway)."""
        task = asyncio.get_running_loop().create_task(self._delete(lease))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _delete(self, lease: uuid.UUID) -> None:
        try:
            async with self._state.pool.connection() as conn:
                await conn.execute("DELETE FROM limit_leases WHERE id = %s", (lease,))
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("a concurrency slot is freed at its expiry instead: %s", exc)

    async def renew_forever(self) -> None:
        """Keep this replica's leases alive (a background task of ``PostgresState``)."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.renew()
            except (psycopg.Error, PoolTimeout) as exc:
                log.warning("could not renew this replica's concurrency leases: %s", exc)

    async def renew(self) -> None:
        async with self._state.pool.connection() as conn:
            await conn.execute(
                "UPDATE limit_leases SET expires = now() + make_interval(secs => %s) "
                "WHERE replica = %s",
                (LEASE_SECONDS, self._state.replica),
            )

    async def given_back(self) -> None:
        """Once the slots released so far are deleted."""
        if self._returning:
            await asyncio.wait(list(self._returning))

    async def forget_replica(self) -> None:
        """At a clean stop: free this replica's slots now."""
        await self.given_back()
        async with self._state.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM limit_leases WHERE replica = %s", (self._state.replica,)
            )
