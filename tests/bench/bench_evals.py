"""Eval runner overhead, measured side by side in one run (scripted model: no model time).

    python tests/bench/bench_evals.py [N_SCENARIOS]

Prints samples per second for: no tracing; spans into the audit store (SQLite, through the
AuditWriter); and the same with the model-call cache cold and warm. The difference is what
the framework itself costs per sample (results, transcripts, spans).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from labelgate.evals.agent import AgentLimits
from labelgate.evals.dilemmas.family import DilemmasFamily
from labelgate.evals.runner import RunConfig, Runner
from labelgate.evals.store import ResultsStore
from labelgate.evals.tracing import audit_tracing
from labelgate.guard.models import ScriptedModel


def config(limit: int, cache: bool) -> RunConfig:
    return RunConfig(
        family="dilemmas",
        model="scripted",
        limit=limit,
        cache=cache,
        limits=AgentLimits(),
        family_options={"steer": 2},
    )


async def timed(runner: Runner, limit: int, cache: bool, run_id: str) -> tuple[int, float]:
    model = ScriptedModel(["Action 1", "Action 2", "I choose Action 2."], cycle=True)
    t0 = time.perf_counter()
    summary = await runner.run(DilemmasFamily(), model, config(limit, cache), run_id)
    return summary.n_samples, time.perf_counter() - t0


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 34
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        store = ResultsStore(db)
        rows = []
        asyncio.run(timed(Runner(store, TracerProvider()), 1, False, "warm-up"))  # imports
        n, secs = asyncio.run(timed(Runner(store, TracerProvider()), limit, False, "plain"))
        rows.append(("results only, no span export", n, secs))
        with audit_tracing(db) as provider:
            runner = Runner(store, provider)
            rows.append(
                ("+ spans to the audit store", *asyncio.run(timed(runner, limit, False, "traced")))
            )
            rows.append(("+ cache, cold", *asyncio.run(timed(runner, limit, True, "cold"))))
            rows.append(("+ cache, warm", *asyncio.run(timed(runner, limit, True, "warm"))))
        t0 = time.perf_counter()
        from labelgate.evals.report import write_report

        write_report(store, "traced", Path(tmp) / "reports")
        report_s = time.perf_counter() - t0
        store.close()
    print(f"{'configuration':<32} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
    for name, n, secs in rows:
        print(f"{name:<32} {n:>8} {secs:>8.2f} {n / secs:>10.1f}")
    print(f"report (HTML with plots + markdown) for {rows[1][1]} samples: {report_s:.2f} s")


if __name__ == "__main__":
    main()
