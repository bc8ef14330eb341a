"""Per-key rate limits and concurrency caps in PostgreSQL: they hold across replicas.

- Rate: one token bucket row per key (``rate_buckets``), refilled and taken from in one atomic
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (the row lock orders concurrent takers; the
  update happens only when a whole token is there).
- Concurrency: one row per key and replica (``limit_slots``) holding how many of the key's
  requests that replica has in flight. A request is admitted when the sum over the replicas'
  live rows is under the cap, counted and raised under a per-key advisory lock. A replica
  renews its rows every ``RENEW_SECONDS``, writing its own count again (so a release that
  failed to reach the database is made good); a row expires ``LEASE_SECONDS`` after its last
  renewal: the slots of a replica that dies are free again within ``LEASE_SECONDS``, those of
  one that stops cleanly at once. One row per replica, updated in place (no index column
  changes: PostgreSQL's HOT updates), stays cheap to count however many requests come and go;
  a row per request was measured first, and slowed as deleted rows piled up between vacuums.

Keys without limits never touch the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
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
    # 1: token buckets and concurrency slots
    """
    CREATE TABLE rate_buckets (
        key    text PRIMARY KEY,             -- the API key's sha256 (key_hash)
        tokens double precision NOT NULL,    -- after the last take
        stamp  timestamptz NOT NULL          -- of the last take
    );
    CREATE TABLE limit_slots (
        key       text NOT NULL,
        replica   text NOT NULL,             -- renews its rows while it lives
        in_flight integer NOT NULL,          -- the key's requests this replica is serving
        expires   timestamptz NOT NULL,
        PRIMARY KEY (key, replica)
    );
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
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"
# Run after _LOCK, in its transaction: a statement's snapshot is taken when it starts, so the
# sum must not be in the statement that waits for the lock.
_OCCUPY = """
    INSERT INTO limit_slots AS s (key, replica, in_flight, expires)
    SELECT %(key)s, %(replica)s, 1, now() + make_interval(secs => %(ttl)s)
    WHERE (SELECT coalesce(sum(in_flight), 0) FROM limit_slots
           WHERE key = %(key)s AND expires > now()) < %(cap)s
    ON CONFLICT (key, replica) DO UPDATE SET in_flight = s.in_flight + 1, expires = excluded.expires
    RETURNING in_flight
"""
_FREE_ONE = (
    "UPDATE limit_slots SET in_flight = greatest(in_flight - 1, 0) WHERE key = %s AND replica = %s"
)
_RENEW = """
    UPDATE limit_slots s SET in_flight = mine.n, expires = now() + make_interval(secs => %s)
    FROM unnest(%s::text[], %s::integer[]) AS mine(key, n)
    WHERE s.key = mine.key AND s.replica = %s
"""
_FORGET_DEAD = "DELETE FROM limit_slots WHERE expires < now() - interval '1 hour'"


class _Free:
    """The slot of a key without a concurrency cap: nothing to give back."""

    def release(self) -> None:
        return None


_FREE = _Free()


class _Taken:
    def __init__(self, limits: PostgresLimits, key: str) -> None:
        self._limits = limits
        self._key: str | None = key

    def release(self) -> None:
        key, self._key = self._key, None
        if key is not None:
            self._limits.give_back(key)


class PostgresLimits(Limits):
    def __init__(self, state: PostgresState) -> None:
        self._state = state
        # This replica's requests in flight by key: the truth its rows are renewed with.
        # Counted before the database is (an interleaved renewal then over-counts, never under).
        self._mine: Counter[str] = Counter()
        self._returning: set[asyncio.Task[None]] = set()

    async def admit(self, key: KeyState) -> Slot:
        entry = key.entry
        if entry is None or (entry.rate_limit is None and entry.max_concurrency is None):
            return _FREE
        name, cap, rate = entry.key_hash, entry.max_concurrency, entry.rate_limit
        if rate is not None:
            wait = await self._state.run(lambda conn: self._take(conn, name, rate))
            if wait > 0:
                raise rate_limited(wait)
        if cap is None:
            return _FREE
        self._mine[name] += 1
        try:
            taken = await self._state.run(lambda conn: self._occupy(conn, name, cap))
        except BaseException:
            self._mine[name] -= 1
            raise
        if not taken:
            self._mine[name] -= 1
            raise too_many(cap)
        return _Taken(self, name)

    async def _take(self, conn: psycopg.AsyncConnection[Any], name: str, limit: RateLimit) -> float:
        """0.0 if a token was taken, else the seconds until one is due."""
        args = {"key": name, "burst": float(limit.burst), "rate": limit.requests_per_second}
        cursor = await conn.execute(_TAKE, args)
        if await cursor.fetchone() is not None:
            return 0.0
        cursor = await conn.execute(_LEFT, args)
        row = await cursor.fetchone()
        left = float(row[0]) if row else 0.0
        return max(1.0 - left, 0.0) / limit.requests_per_second or 1e-3

    async def _occupy(self, conn: psycopg.AsyncConnection[Any], name: str, cap: int) -> bool:
        args = {"key": name, "replica": self._state.replica, "ttl": LEASE_SECONDS, "cap": cap}
        async with conn.pipeline(), conn.transaction():  # one round trip for all four
            await conn.execute(_LOCK, args)
            cursor = await conn.execute(_OCCUPY, args)
        return await cursor.fetchone() is not None

    def give_back(self, name: str) -> None:
        """Free a slot (off the request's path; missed, it is made good at the next renewal)."""
        self._mine[name] -= 1
        task = asyncio.get_running_loop().create_task(self._free(name))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _free(self, name: str) -> None:
        try:
            async with self._state.pool.connection() as conn:
                await conn.execute(_FREE_ONE, (name, self._state.replica))
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("a concurrency slot is freed at the next renewal instead: %s", exc)

    async def renew_forever(self) -> None:
        """Keep this replica's rows alive (a background task of ``PostgresState``)."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.renew()
            except (psycopg.Error, PoolTimeout) as exc:
                log.warning("could not renew this replica's concurrency slots: %s", exc)

    async def renew(self) -> None:
        """Write this replica's counts again, with a new expiry; forget long-dead replicas."""
        keys = list(self._mine)
        counts = [self._mine[k] for k in keys]
        async with self._state.pool.connection() as conn:
            await conn.execute(_RENEW, (LEASE_SECONDS, keys, counts, self._state.replica))
            await conn.execute(_FORGET_DEAD)

    async def given_back(self) -> None:
        """Once the slots released so far are freed in the database."""
        if self._returning:
            await asyncio.wait(list(self._returning))

    async def forget_replica(self) -> None:
        """At a clean stop: free this replica's slots now."""
        await self.given_back()
        async with self._state.pool.connection() as conn:
            await conn.execute("DELETE FROM limit_slots WHERE replica = %s", (self._state.replica,))
