"""How large the audit store grows under agents' repeated context, and what writing it costs.

A guarded proxy (``build_app``, as ``labelgate serve`` runs it: the audit writer's child
process, the journal) on loopback in front of the fake upstream (``fake-chat``), and
``--conversations`` agent conversations of ``--turns`` turns each, ``--concurrency`` at a
time. Each request resends the whole conversation as agents do: the agent's system prompt
(one of five, ~2 KB), a document the user attached at the start (~6 KB; one conversation in
``--large-every`` attaches a large one, ``--large-kb``, as a long PDF's text would be), every
earlier question and answer, then the new question. Texts are seeded word salad (about as
compressible as prose). Afterwards: the store's file size and its largest tables (SQLite's
``dbstat``), the rows, the time taken, and ``verify``.

Run: ``python tests/bench/bench_audit_growth.py`` (2,000 requests: 100 conversations of 20
turns). Point ``PYTHONPATH`` at another checkout (a folder holding ``labelgate``) to measure
that one with the same load. ``--prune``: then prune the older half of the records (as a
retention setting would), verify, and vacuum, each timed.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.upstream import FakeUpstream

import labelgate
from labelgate.guard.audit.store import AuditStore
from labelgate.proxy.assemble import build_app
from labelgate.proxy.config import parse_config
from labelgate.proxy.embedded import ServerThread


def _words(rng: random.Random, n: int = 3000) -> list[str]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [len(letters) - i for i in range(len(letters))]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(n)]


class Texts:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = _words(self.rng)

    def text(self, size: int) -> str:
        out: list[str] = []
        length = 0
        while length < size:
            sentence = " ".join(self.rng.choices(self.words, k=self.rng.randint(6, 18)))
            out.append(sentence.capitalize() + ".")
            length += len(sentence) + 2
        return " ".join(out)


def conversation(
    client: httpx.Client, system: str, document: str, questions: list[str], session: str
) -> int:
    """One agent's conversation: every turn resends everything before it."""
    history: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Here is the document to work on:\n\n{document}"},
        {"role": "assistant", "content": "Thank you, I have read it."},
    ]
    for question in questions:
        history.append({"role": "user", "content": question})
        body = {"model": "fake-chat", "messages": history, "metadata": {"session_id": session}}
        response = client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        answer = response.json()["choices"][0]["message"]["content"]
        history.append({"role": "assistant", "content": answer})
    return len(questions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--large-every", type=int, default=20)
    parser.add_argument("--large-kb", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--prune", action="store_true", help="then prune the older half")
    args = parser.parse_args()

    texts = Texts(args.seed)
    systems = [texts.text(2000) for _ in range(5)]
    work = []
    for c in range(args.conversations):
        large = args.large_every and c % args.large_every == 0
        document = texts.text(args.large_kb * 1024 if large else 6000)
        questions = [texts.text(texts.rng.randint(100, 600)) for _ in range(args.turns)]
        work.append((systems[c % len(systems)], document, questions, f"session-{c}"))

    upstream = FakeUpstream(keep=False)
    fake = ServerThread(upstream.app()).start()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        config = {
            "model_list": [
                {
                    "model_name": "fake-chat",
                    "litellm_params": {
                        "model": "openai/fake-chat",
                        "api_base": f"{fake.url}/v1",
                        "api_key": "sk-upstream",
                        "passthrough": True,
                    },
                }
            ],
            "guard": {"state_dir": str(state)},
        }
        app = build_app(parse_config(config))
        proxy = ServerThread(app).start()
        proxy.wait_ready(timeout=120)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:

            def run(item: tuple[str, str, list[str], str]) -> int:
                with httpx.Client(base_url=proxy.url, timeout=120) as client:
                    return conversation(client, *item)

            sent = sum(pool.map(run, work))
        elapsed = time.perf_counter() - start
        proxy.stop()  # shutdown: the writer flushes and closes
        fake.stop()
        db = state / "audit.db"
        wal = Path(f"{db}-wal")
        size = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        with AuditStore(db, readonly=True) as store:
            counts = store.counts()
            started = time.perf_counter()
            report = store.verify()
            verify_s = time.perf_counter() - started
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = conn.execute(
                "select name, sum(pgsize) from dbstat group by name order by 2 desc limit 6"
            ).fetchall()
        except sqlite3.OperationalError:  # SQLite built without dbstat
            tables = []
        conn.close()
        pruned = _prune_half(db) if args.prune else []
    load = os.getloadavg()
    print(f"labelgate from {Path(labelgate.__file__).parent}")
    print(
        f"requests: {sent} ({args.conversations} conversations x {args.turns} turns, "
        f"{args.concurrency} at a time) in {elapsed:.1f} s ({sent / elapsed:.1f} requests/s)"
    )
    print(f"audit store: {size / 1e6:.1f} MB  ({', '.join(f'{t} {n}' for t, n in counts.items())})")
    print("largest: " + ", ".join(f"{name} {pages / 1e6:.1f} MB" for name, pages in tables))
    print(f"verify: {report.summary()[:60]}... in {verify_s:.1f} s")
    for line in pruned:
        print(line)
    print(f"load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    assert report.ok and counts["requests"] == sent


def _prune_half(db: Path) -> list[str]:
    """Prune the records written before the middle one, verify, vacuum; what each took."""
    from datetime import datetime

    with AuditStore(db) as store:
        (middle,) = store.db.execute(
            "select created from ledger where seq = (select max(seq) / 2 from ledger)"
        ).fetchone()
        started = time.perf_counter()
        report = store.prune(datetime.fromisoformat(middle), by="bench")
        prune_s = time.perf_counter() - started
        started = time.perf_counter()
        verified = store.verify()
        verify_s = time.perf_counter() - started
        started = time.perf_counter()
        store.vacuum()
        vacuum_s = time.perf_counter() - started
    assert verified.ok, verified.summary()
    return [
        f"prune: {report.summary()[:110]}... in {prune_s:.1f} s",
        f"then verify: {verified.summary()[:40]}... in {verify_s:.1f} s; vacuum {vacuum_s:.1f} s:"
        f" {db.stat().st_size / 1e6:.1f} MB",
    ]


if __name__ == "__main__":
    main()
