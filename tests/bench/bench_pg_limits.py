"""Benchmark what a key's limits cost a request: counted in the process against in PostgreSQL.

    python tests/bench/bench_pg_limits.py [--n 2000]

Side by side, in one event loop: ``LocalLimits`` and ``PostgresLimits`` admitting (and
releasing) requests of a key with no limits, a rate-limited key (a token bucket row taken per
request), a capped key (a lease row per request, deleted at release) and a key with both. The
bucket is large enough that nothing is refused. The PostgreSQL server is ``$LABELGATE_TEST_PG``
(default: the machine's own on loopback); a database ``labelgate_bench_<random>`` is made for
the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.proxy.auth import KeyState, Limits, LocalLimits, hash_key
from labelgate.proxy.config import KeyEntry
from labelgate.proxy.pg_state import PostgresState

SERVER = os.environ.get("LABELGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RATE = {"requests_per_second": 1e6, "burst": 10**9}
KEYS = {
    "no limits": {},
    "rate limit": {"rate_limit": RATE},
    "concurrency cap": {"max_concurrency": 64},
    "both": {"rate_limit": RATE, "max_concurrency": 64},
}


@contextmanager
def bench_database() -> Iterator[str]:
    name = f"labelgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield SERVER.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def admits(limits: Limits, key: KeyState, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        slot = await limits.admit(key)
        times.append(time.perf_counter() - t0)
        slot.release()
    return times


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"median {statistics.median(ms):.3f} ms, p99 {ms[int(0.99 * len(ms))]:.3f} ms"


async def run(dsn: str, n: int) -> None:
    shared = PostgresState(dsn)
    await shared.start()
    local = LocalLimits()
    try:
        for name, extra in KEYS.items():
            entry = KeyEntry(key_hash=hash_key(f"sk-{name}"), agent_id="bench", **extra)
            key = KeyState(entry)
            here = await admits(local, key, n)
            there = await admits(shared.limits, key, n)
            await shared._limits.given_back()  # released leases deleted before the next key
            ratio = statistics.median(there) / statistics.median(here)
            print(f"{name:<16} in process: {summary(here)}")
            print(f"{'':<16} PostgreSQL: {summary(there)} ({ratio:,.0f}x)")
    finally:
        await shared.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="admissions per key and backend")
    args = parser.parse_args()
    with bench_database() as dsn:
        asyncio.run(run(dsn, args.n))


if __name__ == "__main__":
    main()
