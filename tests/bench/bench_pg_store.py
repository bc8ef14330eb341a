"""Benchmark the fingerprint store on PostgreSQL against SQLite, side by side (issue 22).

    python tests/bench/bench_pg_store.py                 # 10^4 and 10^5 stored texts
    python tests/bench/bench_pg_store.py --max 1000000   # and 10^6 (about 25 min on 2 cores)

The same synthetic texts as ``bench_fingerprints.py`` (generated and fingerprinted once, added
to both stores), the same 4 KB queries (half contain a stored text). At each size:

- lookups through each replica's memory index (what ``state.backend: postgres`` does): SQLite,
  and PostgreSQL (the same index; matches' labels fetched from the server);
- SQL-only lookups over the postings table (``memory_index=False``, the shared-lookup design
  not chosen): SQLite and PostgreSQL (after ``VACUUM ANALYZE``, as autovacuum would: without
  statistics the planner scans the whole postings table);
- opening a replica (loading every row into its memory index), SQLite and PostgreSQL;
- the cross-replica bound: a text added at replica A (one ``add_many`` of one text, committed)
  until replica B's memory index holds it (B's listener heard the NOTIFY and loaded the row);
  and what ``state.read_your_writes`` adds to each request: B asking for rows it lacks.

The PostgreSQL server is ``$LABELGATE_TEST_PG`` (default: the machine's own on loopback); a
database ``labelgate_bench_<random>`` is made for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from bench_fingerprints import (
    PARAMS,
    batches,
    embed,
    machine,
    percentiles,
    stored_text,
    timed,
)
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.guard.fingerprint import LookupOptions, SQLiteFingerprintStore, fingerprint
from labelgate.guard.fingerprint.pg_store import PostgresFingerprintStore
from labelgate.guard.labels import Lattice

SERVER = os.environ.get("LABELGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def bench_database() -> Iterator[str]:
    name = f"labelgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield SERVER.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def server_version() -> str:
    with psycopg.connect(SERVER) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def lookups(
    stores: dict[str, SQLiteFingerprintStore | PostgresFingerprintStore],
    n_texts: int,
    n_queries: int,
) -> None:
    rng = random.Random(n_texts)
    queries = [
        embed(stored_text(rng.randrange(n_texts)) if q % 2 == 0 else "", 5000 + q)
        for q in range(n_queries)
    ]
    fps = [fingerprint(q, PARAMS) for q in queries]
    opts = LookupOptions()
    medians: dict[str, float] = {}
    for name, store in stores.items():
        found = sum(bool(store.lookup(q)) for q in queries[::2]) / len(queries[::2])
        false = sum(bool(store.lookup(q)) for q in queries[1::2])
        many = fps if "SQL only" not in name else fps[:50]
        times = [timed(lambda f=f, s=store: s.lookup_fingerprints(f, opts)) for f in many]
        medians[name] = sorted(times)[len(times) // 2]
        print(
            f"  {name:<34}: {percentiles(times)} ({len(many)} queries; "
            f"found {found:.0%}, false positives {false})"
        )
    base = medians["SQLite, memory index"]
    ratios = ", ".join(f"{name} {m / base:.2f}x" for name, m in medians.items())
    print(f"  median against SQLite's memory index: {ratios}")


def cross_replica(a: PostgresFingerprintStore, b: PostgresFingerprintStore, n: int) -> None:
    """One text at a time added at a, until b holds it: the bound of re-identification."""
    lattice = Lattice()
    commits, visible = [], []
    for i, batch in enumerate(batches(10**8, 10**8 + n, 1, lattice)):
        entry = batch[0]
        entry = type(entry)(f"x{i}-{secrets.token_hex(4)}", entry.fingerprints, entry.label)
        t0 = time.perf_counter()
        a.add_many([entry])
        commits.append(time.perf_counter() - t0)
        target = a.loaded
        if not b.wait_until(lambda target=target: b.loaded >= target, 30):
            raise SystemExit("replica b never loaded the row")
        visible.append(time.perf_counter() - t0)
    print(f"  add at A (one text, committed)    : {percentiles(commits)} ({n} texts)")
    print(f"  added at A until held at B        : {percentiles(visible)}")
    # state.read_your_writes: every request first loads what its replica lacks (usually nothing)
    fences = [timed(b.refresh) for _ in range(n)]
    print(f"  B loads what it lacks (nothing)   : {percentiles(fences)} (read_your_writes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=100_000, help="largest store size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--replicated", type=int, default=200, help="texts for the bound")
    parser.add_argument(
        "--no-postings", action="store_true", help="memory indexes only (no SQL-only lookups)"
    )
    args = parser.parse_args()
    lattice = Lattice()
    print(f"machine: {machine()}; PostgreSQL {server_version()} on loopback")
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= args.max] or [args.max]
    with tempfile.TemporaryDirectory() as tmp, bench_database() as dsn:
        path = Path(tmp) / "fingerprints.db"
        postings = not args.no_postings
        lite = SQLiteFingerprintStore(path, lattice, PARAMS, postings=postings)
        pg = PostgresFingerprintStore(dsn, lattice, PARAMS, postings=postings)
        built = 0
        for n in sizes:
            print(f"\n== {n:,} stored texts ==")
            t_lite = t_pg = 0.0
            for batch in batches(built, n, args.batch, lattice):
                t_lite += timed(lambda b=batch, s=lite: s.add_many(b))
                t_pg += timed(lambda b=batch, s=pg: s.add_many(b))
            added = n - built
            print(
                f"  build +{added:,}: add_many SQLite {t_lite:.1f} s ({added / t_lite:,.0f}/s), "
                f"PostgreSQL {t_pg:.1f} s ({added / t_pg:,.0f}/s) "
                f"({'with' if postings else 'without'} postings)"
            )
            built = n
            with psycopg.connect(dsn, autocommit=True) as conn:  # what autovacuum would do
                conn.execute("VACUUM ANALYZE fingerprint_texts, fingerprint_postings")
            sqlite_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
            lite.close()
            t0 = time.perf_counter()
            lite = SQLiteFingerprintStore(path, lattice, postings=postings)
            t_open_lite = time.perf_counter() - t0
            t0 = time.perf_counter()
            replica = PostgresFingerprintStore(dsn, lattice)  # a second replica starting
            t_open_pg = time.perf_counter() - t0
            print(
                f"  open a replica (load its index)   : SQLite {t_open_lite:.2f} s, "
                f"PostgreSQL {t_open_pg:.2f} s"
            )
            stats = pg.stats()
            disk, posting_mb = stats["disk_bytes"] / 2**20, stats["postings_disk_bytes"] / 2**20
            print(
                f"  on disk: PostgreSQL {disk:.0f} MB ({posting_mb:.0f} MB of it postings), "
                f"SQLite {sqlite_mb:.0f} MB"
            )
            stores = {"SQLite, memory index": lite, "PostgreSQL, memory index": replica}
            if postings:
                stores["SQLite, SQL only"] = SQLiteFingerprintStore(
                    path, lattice, memory_index=False
                )
                stores["PostgreSQL, SQL only"] = PostgresFingerprintStore(
                    dsn, lattice, memory_index=False
                )
            lookups(stores, n, args.queries)
            cross_replica(pg, replica, args.replicated)
            for store in stores.values():
                if store is not lite:
                    store.close()
        lite.close()
        pg.close()


if __name__ == "__main__":
    main()
