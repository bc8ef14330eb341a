"""labelgate's agent-safety eval suite: scenarios, environments, an agent loop, scorers,
statistics, a resumable runner with SQLite results and OpenTelemetry traces, and reports.

Families: ``dilemmas`` (value dilemmas, after DailyDilemmas), ``scheming`` (in-context
scheming) and ``spread`` (manipulated knowledge in agent communities). From Python:
``run_eval(family, model=...)``; see docs/evals.md and docs/python-api.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labelgate.guard.lazy import lazy_exports

if TYPE_CHECKING:
    from labelgate.evals.api import EvalError, EvalResult, run_eval, run_eval_async

_EXPORTS = {
    "EvalError": "labelgate.evals.api",
    "EvalResult": "labelgate.evals.api",
    "run_eval": "labelgate.evals.api",
    "run_eval_async": "labelgate.evals.api",
}

__all__ = ["EvalError", "EvalResult", "run_eval", "run_eval_async"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
