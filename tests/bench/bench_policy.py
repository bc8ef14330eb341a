"""Policy engine cost: decisions and source labels per second for each shipped pack.

Run: python tests/bench/bench_policy.py   (not collected by pytest)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from labelgate.guard.policy import SinkEvent, SourceContext, load_policy

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "docs" / "examples" / "events").glob("*.json"))


def per_call_us(fn: Callable[[], object], repeat: int = 2000) -> float:
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1e6


def main() -> None:
    events = [SinkEvent.model_validate(json.loads(p.read_text())) for p in EVENTS]
    ctx = SourceContext(kind="document", url="https://evil.example/page", tool="fetch_url")
    start = time.perf_counter()
    packs = {p.name: load_policy(p) for p in sorted((ROOT / "policies").glob("*.yaml"))}
    load_ms = (time.perf_counter() - start) / len(packs) * 1e3
    print(f"load+validate: {load_ms:.1f} ms per pack (mean of {len(packs)})")
    print(f"{'pack':32} {'decide us':>10} {'label_source us':>16}")
    for name, policy in packs.items():
        decide = sum(per_call_us(lambda p=policy, e=e: p.decide(e), 500) for e in events)
        decide /= len(events)
        label = per_call_us(lambda p=policy: p.label_source(ctx))
        print(f"{name:32} {decide:10.1f} {label:16.1f}")


if __name__ == "__main__":
    main()
