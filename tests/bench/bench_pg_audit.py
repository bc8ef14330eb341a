"""The audit trail of several replicas on PostgreSQL: one hash chain under a lock, or one chain
per replica anchored in one table? Write throughput of both, side by side in one run.

Run: python tests/bench/bench_pg_audit.py [--server URL] [--records N] [--replicas 1,2,4]

Each figure is the best of ``--repeat`` runs, the two designs alternating (the machine's load,
shared, drifts). Each replica is a process of its own (as ``labelgate serve`` replicas are)
writing ``--records`` records (requests of 6: a request, 4 messages, a decision) in batches
of ``--batch`` records (one transaction each: what the ``AuditWriter`` commits), all replicas
at once. Two designs:

- ``one chain``: ``PgAuditStore`` as shipped. Each batch takes the transaction-level advisory
  lock, reads the head, appends and commits: batches of all replicas are serialised from the
  head read to the commit.
- ``per replica``: each replica chains its own records (its head kept in memory and anchored
  in ``audit_chains``, one row per replica, updated in the batch's transaction), seqs drawn
  from one sequence: no lock, nothing serialised but what PostgreSQL serialises anyway (the
  WAL flush at commit).

Also, for scale: one writer on SQLite (``AuditStore``, same batches), and ``audit verify`` of
the one-chain trail. Prints records/s and the per-replica/one-chain ratio. A throwaway
database on ``--server`` (default: the machine's own, loopback) is created and dropped.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Mapping, Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from labelgate.guard.audit.pgstore import PgAuditStore
from labelgate.guard.audit.records import AuditRecord, DecisionRecord, MessageRecord, RequestRecord
from labelgate.guard.audit.schema import GENESIS_HASH
from labelgate.guard.audit.store import AuditStore, chained_rows

TEXT = "Please summarise the attached quarterly report for the finance team. " * 4
LABEL = {"confidentiality": "confidential", "integrity": "untrusted", "sources": ["web:x"]}
Fields = list[tuple[type[AuditRecord], Mapping[str, Any]]]


def make_batches(replica: int, records: int, batch: int) -> list[Fields]:
    """``records`` records in batches of ``batch``: requests of 6, texts distinct per request."""
    rows: Fields = []
    while len(rows) < records:
        request = RequestRecord(model="m", agent=f"replica-{replica}", label=LABEL)
        rows.append((RequestRecord, request.__dict__))
        for i in range(4):
            text = f"{TEXT} {replica}.{len(rows)}.{i}"
            message = MessageRecord(request_id=request.id, position=i, content=text, label=LABEL)
            rows.append((MessageRecord, message.__dict__))
        decision = DecisionRecord(request_id=request.id, sink="tool:send_email", action="deny")
        rows.append((DecisionRecord, decision.__dict__))
    rows = rows[:records]
    return [rows[i : i + batch] for i in range(0, len(rows), batch)]


class PerReplicaChains(PgAuditStore):
    """The alternative measured: one chain per replica, anchored in ``audit_chains``."""

    def __init__(self, dsn: str, replica: int) -> None:
        super().__init__(dsn)
        self.replica = replica
        self.prev = GENESIS_HASH
        self.conn().execute("insert into audit_chains values (%s, 0, %s)", [replica, GENESIS_HASH])

    @staticmethod
    def prepare(dsn: str) -> None:
        """The anchors' table and the seq sequence, made once before the replicas start."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "create table audit_chains (replica integer primary key, "
                "head_seq bigint, head_hash text)"
            )
            conn.execute("create sequence audit_seq")

    def write_fields(self, records: Sequence[tuple[type[AuditRecord], Mapping[str, Any]]]) -> int:
        conn = self.conn()
        with conn.transaction():
            seqs = [
                int(r[0])
                for r in conn.execute(
                    "select nextval('audit_seq') from generate_series(1, %s)", [len(records)]
                )
            ]
            chained = chained_rows(records, seqs, self.prev)
            self._insert(conn, chained)
            conn.execute(
                "update audit_chains set head_seq = %s, head_hash = %s where replica = %s",
                [*chained.head, self.replica],
            )
        self.prev = chained.head[1]
        return len(records)


def replica(
    design: str, dsn: str, index: int, records: int, batch: int, start: Barrier, out: Any
) -> None:
    batches = make_batches(index, records, batch)
    store = PgAuditStore(dsn) if design == "one chain" else PerReplicaChains(dsn, index)
    start.wait()
    began = time.perf_counter()
    for fields in batches:
        store.write_fields(fields)
    out.put((began, time.perf_counter()))
    store.close()


def run(design: str, dsn: str, replicas: int, records: int, batch: int) -> float:
    """Records/s of ``replicas`` processes writing at once (first start to last end)."""
    PgAuditStore(dsn).close()  # migrated before the clock starts
    if design == "per replica":
        PerReplicaChains.prepare(dsn)
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(replicas), ctx.Queue()
    procs = [
        ctx.Process(target=replica, args=(design, dsn, i, records, batch, start, out))
        for i in range(replicas)
    ]
    for p in procs:
        p.start()
    spans = [out.get(timeout=600) for _ in procs]  # a replica that died: no hang
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"{design} replica exited {p.exitcode}"
    began, ended = min(s for s, _ in spans), max(e for _, e in spans)
    return replicas * records / (ended - began)


def sqlite_one(records: int, batch: int) -> float:
    batches = make_batches(0, records, batch)
    with tempfile.TemporaryDirectory() as folder, AuditStore(Path(folder) / "a.db") as store:
        began = time.perf_counter()
        for fields in batches:
            store.write_fields(fields)
        return records / (time.perf_counter() - began)


def _database(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def fresh(admin: psycopg.Connection[Any], server: str) -> str:
    name = f"bench_audit_{secrets.token_hex(4)}"
    admin.execute(f"create database {name}")
    return _database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--records", type=int, default=1800, help="per replica")
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch", default="6,120", help="records per transaction")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure (the best)")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    batches = [int(n) for n in args.batch.split(",")]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; ", end=""
    )
    admin = psycopg.connect(args.server, autocommit=True)
    print(admin.execute("select version()").fetchone()[0].split(" on ")[0])
    print(f"{args.records} records per replica (requests of 6), distinct texts\n")
    made: list[str] = []
    try:
        for batch in batches:
            lite = max(sqlite_one(args.records, batch) for _ in range(args.repeat))
            print(f"batch {batch} records:  SQLite, 1 writer: {lite:,.0f}/s")
            print(f"{'replicas':>10} {'one chain':>12} {'per replica':>12} {'ratio':>7}")
            for n in counts:
                rates = {"one chain": 0.0, "per replica": 0.0}
                for _ in range(args.repeat):  # alternating, best of: the load here drifts
                    for design in rates:
                        dsn = fresh(admin, args.server)
                        made.append(dsn)
                        rate = run(design, dsn, n, args.records, batch)
                        rates[design] = max(rates[design], rate)
                ratio = rates["per replica"] / rates["one chain"]
                print(
                    f"{n:>10} {rates['one chain']:>10,.0f}/s {rates['per replica']:>10,.0f}/s "
                    f"{ratio:>6.2f}x"
                )
            print()
        with PgAuditStore(made[-2], readonly=True) as store:  # the last one-chain trail
            began = time.perf_counter()
            report = store.verify()
            took = time.perf_counter() - began
        print(f"audit verify (one chain): {report.records / took:,.0f} records/s ({report.ok})")
    finally:
        for dsn in made:
            admin.execute(f"drop database if exists {urlsplit(dsn).path[1:]} with (force)")
        admin.close()


if __name__ == "__main__":
    main()
