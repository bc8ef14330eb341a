"""Throughput of 1, 2 and 4 proxy replicas on PostgreSQL against one replica on SQLite, side by
side in one run (issue 22), loopback only.

Each target is a set of ``labelgate serve`` processes (the guard as shipped) in front of one
fake upstream; the PostgreSQL sets share a fresh database each (fingerprints, audit trail,
limits), the SQLite one keeps its own files. The load is a closed loop of ``--concurrency``
clients, client *k* always sending to replica *k mod N* (what a round-robin balancer does),
each request a new 50-word prompt (the guard looks it up, fingerprints and stores the answer,
and writes the audit records: the shared work is what scales or not). The targets take turns in
rounds (order reversed every other round), so drift on a shared machine hits each alike.

On a 2-core machine the client, the fake upstream and every replica share the two cores:
more replicas cannot add CPU here, only show what sharing state costs. Bigger hosts: see
docs/performance.md.

Run: ``python tests/bench/bench_replicas.py [--dsn postgresql://...] [--seconds 4]
[--concurrency 16] [--replicas 1,2,4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg
from bench_proxy import (
    Sample,
    Target,
    _free_port,
    _model_list,
    _one,
    _p50,
    _q,
    _spawn,
    _start_fake,
    _stop,
    _wait,
    cpu_seconds,
)
from labelgate_tree import ROOT, module

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _database(admin: str) -> str:
    """A fresh database for one target (dropped at the end)."""
    name = f"labelgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin.rsplit("/", 1)[0] + "/" + name


def _drop(admin: str, dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (its backends exit with
    their connections, so a window's figure counts those alive at both ends: a lower bound)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _replica(name: str, work: Path, fake: Target, dsn: str | None) -> Target:
    port = _free_port()
    folder = work / name
    folder.mkdir(parents=True)
    config: dict[str, object] = {
        "model_list": _model_list(fake),
        "guard": {"state_dir": str(folder / "state")},
    }
    if dsn is not None:
        config["state"] = {"backend": "postgres", "dsn": dsn}
    path = folder / "proxy.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    code = f"from {module(ROOT, 'proxy.cli')} import serve; serve()"
    args = [sys.executable, "-c", code, "--config", str(path), "--port", str(port)]
    proc = _spawn([*args, "--log-level", "warning"], folder / "serve.log")
    return Target(name, f"http://127.0.0.1:{port}", proc, "/readyz")


async def _window(
    session: aiohttp.ClientSession, replicas: list[Target], concurrency: int, seconds: float
) -> Sample:
    """A closed loop: client k sends to replica k mod N, its next request once answered."""
    out = Sample()
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        url = replicas[k % len(replicas)].url
        while time.perf_counter() < stop:
            await _one(session, url, False, out, unique=True)

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    out.elapsed = time.perf_counter() - start
    return out


async def _run(targets: dict[str, list[Target]], args: argparse.Namespace) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        for replicas in targets.values():
            for replica in replicas:
                if not await _wait(session, replica, 120.0):
                    raise RuntimeError(f"{replica.name} did not come up")
            await _window(session, replicas, 4, 1.0)  # warm: connections, imports, caches
        runs = {name: Sample() for name in targets}
        cpu = dict.fromkeys(targets, 0.0)
        server = dict.fromkeys(targets, 0.0)
        names = list(targets)
        for k in range(args.rounds):  # the order reversed every other round
            for name in names if k % 2 == 0 else names[::-1]:
                replicas = targets[name]
                before = sum(cpu_seconds(r.proc.pid) for r in replicas)
                pg_before = _postgres_cpu()
                runs[name].add(await _window(session, replicas, args.concurrency, args.seconds))
                cpu[name] += sum(cpu_seconds(r.proc.pid) for r in replicas) - before
                server[name] += max(0.0, _postgres_cpu() - pg_before)
    _table(runs, cpu, server, args)


def _table(
    runs: dict[str, Sample],
    cpu: dict[str, float],
    server: dict[str, float],
    args: argparse.Namespace,
) -> None:
    print(f"\nclosed loop, c={args.concurrency}, {args.rounds} x {args.seconds:.0f} s per target")
    print(f"{'target':<18}{'req/s':>8}{'x SQLite':>10}{'p50 ms':>9}{'p99 ms':>9}", end="")
    print(f"{'CPU ms/req':>12}{'PG CPU ms/req':>15}{'errors':>8}")
    base = None
    for name, run in runs.items():
        rate = len(run.total) / run.elapsed if run.elapsed else 0.0
        base = base if base is not None else rate
        per = 1000 * cpu[name] / max(1, len(run.total))
        pg = 1000 * server[name] / max(1, len(run.total))
        print(
            f"{name:<18}{rate:>8.0f}{rate / base:>9.2f}x{_p50(run.total):>9.2f}"
            f"{_q(run.total, 0.99):>9.1f}{per:>12.2f}{pg:>15.2f}{run.errors:>8}"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("LABELGATE_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--seconds", type=float, default=4.0, help="per window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replicas", default="1,2,4", help="PostgreSQL replica counts")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")
    counts = [int(n) for n in args.replicas.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        work = Path(tmp)
        fake = _start_fake(work)
        everything: list[Target] = [fake]
        databases: list[str] = []
        try:
            targets = {"sqlite x1": [_replica("sqlite-1", work, fake, None)]}
            for n in counts:
                dsn = _database(args.dsn)
                databases.append(dsn)
                targets[f"postgres x{n}"] = [
                    _replica(f"pg{n}-{i}", work, fake, dsn) for i in range(n)
                ]
            everything += [r for replicas in targets.values() for r in replicas]
            asyncio.run(_run(targets, args))
        finally:
            _stop(everything)
            for dsn in databases:
                _drop(args.dsn, dsn)


if __name__ == "__main__":
    main()
