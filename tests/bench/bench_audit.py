"""Audit store throughput: the batching AuditWriter vs one transaction per record.

Run: python tests/bench/bench_audit.py [--records N] [--distinct]
Prints records/s for both, side by side in one run, and the submit() latency the caller sees.
Both paths use the same store, schema, hash chain, FTS triggers and WAL/synchronous=NORMAL.
Every message has the same text (as resent context is), unless ``--distinct``: each its own
(the worst case for a store that keeps each text once).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from labelgate.guard.audit.records import AuditRecord, DecisionRecord, MessageRecord, RequestRecord
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.labels import Lattice

LABEL = Lattice().label("confidential", "untrusted", sources=["web:example.org"])
TEXT = "Please summarise the attached quarterly report for the finance team. " * 4


def make_records(n: int, distinct: bool = False) -> list[AuditRecord]:
    """A realistic mix: per request, 4 messages and 1 decision (6 records)."""
    records: list[AuditRecord] = []
    while len(records) < n:
        request = RequestRecord(model="local/smollm2", agent="planner", label=LABEL)
        records.append(request)
        records += [
            MessageRecord(
                request_id=request.id,
                position=i,
                role="user",
                content=f"{TEXT} {len(records)}.{i}" if distinct else TEXT,
                label=LABEL,
            )
            for i in range(4)
        ]
        records.append(
            DecisionRecord(request_id=request.id, sink="tool:send_email", action="deny", reason="x")
        )
    return records[:n]


def naive(path: Path, records: list[AuditRecord]) -> float:
    with AuditStore(path) as store:
        start = time.perf_counter()
        for record in records:
            store.write_batch([record])
        return time.perf_counter() - start


def batched(
    path: Path, records: list[AuditRecord], rate: float | None = None
) -> tuple[float, list[float], int]:
    """Submit everything (at ``rate`` records/s if given); return time, latencies (us), waits."""
    latencies: list[float] = []
    writer = AuditWriter(path)
    start = time.perf_counter()
    for i, record in enumerate(records):
        if rate is not None:
            while time.perf_counter() - start < i / rate:
                pass  # spin: sleep() is too coarse for sub-millisecond pacing
        t0 = time.perf_counter_ns()
        writer.submit(record)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    writer.close()  # includes the final flush: everything is on disk
    elapsed = time.perf_counter() - start
    assert writer.stats.written == len(records)
    return elapsed, latencies, writer.stats.blocked_submits


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--paced", type=int, default=6_000, help="records in the paced run")
    parser.add_argument("--rate", type=float, default=3_000, help="paced run, records/s")
    parser.add_argument("--distinct", action="store_true", help="every message text different")
    args = parser.parse_args()
    records = make_records(args.records, args.distinct)
    with tempfile.TemporaryDirectory() as tmp:
        t_naive = naive(Path(tmp) / "naive.db", records)
        t_batched, lat, blocked = batched(Path(tmp) / "batched.db", records)
        paced = records[: args.paced]
        _, lat_paced, blocked_paced = batched(Path(tmp) / "paced.db", paced, args.rate)
        with AuditStore(Path(tmp) / "batched.db") as store:
            start = time.perf_counter()
            report = store.verify()
            t_verify = time.perf_counter() - start
        assert report.ok and report.records == len(records)
    n = len(records)
    print(f"records: {n} (requests, messages with FTS, decisions; hash-chained)")
    print(f"{'path':<34}{'records/s':>12}{'total s':>10}")
    print(f"{'naive: 1 transaction per record':<34}{n / t_naive:>12,.0f}{t_naive:>10.2f}")
    print(f"{'AuditWriter (batched, off-thread)':<34}{n / t_batched:>12,.0f}{t_batched:>10.2f}")
    print(f"speed-up: {t_naive / t_batched:.1f}x")
    for name, values, waits in (
        ("flat out (queue fills: back-pressure)", lat, blocked),
        (f"paced at {args.rate:,.0f} records/s", lat_paced, blocked_paced),
    ):
        print(
            f"submit() latency, {name}: median {statistics.median(values):.1f} us, "
            f"p99 {percentile(values, 99):.1f} us, max {max(values):,.0f} us, "
            f"{waits} of {len(values)} submits waited"
        )
    print(f"verify: {n / t_verify:,.0f} records/s ({t_verify:.2f} s)")


if __name__ == "__main__":
    main()
