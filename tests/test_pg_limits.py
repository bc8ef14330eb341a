"""Key limits in PostgreSQL, below the replicas test: the slots of a replica that died expire,
a released slot is free again, a live replica's leases are renewed, and a refused request is
told when the next token is due."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pg_fixtures import *  # noqa: F403 - fixtures

from labelgate.proxy.auth import KeyState, hash_key
from labelgate.proxy.config import KeyEntry
from labelgate.proxy.errors import ProxyError

pg_state = pytest.importorskip("labelgate.proxy.pg_state")
pg_limits = pytest.importorskip("labelgate.proxy.pg_limits")


@pytest.fixture
async def state(pg_dsn: str) -> AsyncIterator[pg_state.PostgresState]:
    shared = pg_state.PostgresState(pg_dsn)
    await shared.start()
    yield shared
    await shared.aclose()


async def _sql(state: pg_state.PostgresState, sql: str, *args: object) -> list[tuple]:
    async with state.pool.connection() as conn:
        cursor = await conn.execute(sql, args)
        return await cursor.fetchall() if cursor.description else []


async def test_a_dead_replicas_slots_expire_and_a_lost_release_is_made_good(
    state: pg_state.PostgresState,
) -> None:
    entry = KeyEntry(key_hash=hash_key("sk-worker"), agent_id="worker", max_concurrency=2)
    key = KeyState(entry)
    # a replica that died serving two of the key's requests, its row past its expiry
    await _sql(
        state,
        "INSERT INTO limit_slots VALUES (%s, 'dead', 2, now() - interval '1s')",
        entry.key_hash,
    )
    first = await state.limits.admit(key)  # the expired row does not count
    await state.limits.admit(key)
    with pytest.raises(ProxyError) as refused:
        await state.limits.admit(key)  # ours do: two of two
    assert refused.value.status == 429 and refused.value.code == "concurrency_limit_exceeded"

    mine = "SELECT in_flight, expires FROM limit_slots WHERE replica = %s"
    ((count, before),) = await _sql(state, mine, state.replica)
    assert count == 2
    first.release()
    await state._limits.given_back()
    (await state.limits.admit(key)).release()  # a slot is free again at once
    await state._limits.given_back()
    # a release that never reached the database (an outage) holds a slot...
    await _sql(state, "UPDATE limit_slots SET in_flight = 2 WHERE replica = %s", state.replica)
    with pytest.raises(ProxyError):
        await state.limits.admit(key)
    # ...until the replica renews its rows (every RENEW_SECONDS) with its own count, 1
    await state._limits.renew()
    ((count, after),) = await _sql(state, mine, state.replica)
    assert count == 1 and after > before
    await state.limits.admit(key)


async def test_a_refused_request_is_told_when_the_next_token_is_due(
    state: pg_state.PostgresState,
) -> None:
    rate = {"requests_per_second": 0.25, "burst": 1}
    key = KeyState(KeyEntry(key_hash=hash_key("sk-slow"), agent_id="slow", rate_limit=rate))
    await state.limits.admit(key)
    with pytest.raises(ProxyError) as refused:
        await state.limits.admit(key)
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["retry-after"] == "4"  # a token every 4 s, one just taken
