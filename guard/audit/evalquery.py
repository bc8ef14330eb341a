"""Read-only queries over the ``eval_*`` tables (written by ``evals.store``) in the same file.

Kept in guard so the CLI and the UI share them, without importing ``evals`` (whose store
opens the file read-write and migrates it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from labelgate.guard.audit.views import (
    EvalRunView,
    EvalSampleView,
    NotFound,
    ScoreSummary,
    ScoreView,
    TranscriptMessage,
    loads,
)

Row = dict[str, Any]

_RUN_TRACE = (
    "select trace_id from spans where name = 'eval.run' and "
    "json_extract(attributes_json, '$.\"labelgate.eval.run_id\"') = ? limit 1"
)


class EvalQueries:
    """Mixed into ``AuditReader``; needs its ``rows`` and ``has``."""

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        raise NotImplementedError

    def has(self, table: str) -> bool:
        raise NotImplementedError

    def eval_runs(self, limit: int = 200) -> list[EvalRunView]:
        """Runs newest first, with sample counts and a per-scorer summary."""
        if not self.has("eval_runs"):
            return []
        runs = self.rows("select * from eval_runs order by started_at desc limit ?", [limit])
        return [self._run(row, with_samples=False) for row in runs]

    def eval_run(self, run_id: str) -> EvalRunView:
        rows = (
            self.rows("select * from eval_runs where run_id = ?", [run_id])
            if self.has("eval_runs")
            else []
        )
        if not rows:
            raise NotFound(f"no eval run {run_id!r}")
        return self._run(rows[0], with_samples=True)

    def eval_sample(self, run_id: str, sample_id: str) -> EvalSampleView:
        rows = (
            self.rows(
                "select * from eval_samples where run_id = ? and sample_id = ?", [run_id, sample_id]
            )
            if self.has("eval_samples")
            else []
        )
        if not rows:
            raise NotFound(f"no sample {sample_id!r} in run {run_id!r}")
        sample = _sample(rows[0])
        sample.scores = self._scores(run_id)[sample_id]
        messages = self.rows(
            "select * from eval_messages where run_id = ? and sample_id = ? order by idx",
            [run_id, sample_id],
        )
        sample.messages = [
            TranscriptMessage(
                idx=m["idx"],
                role=m["role"],
                content=m["content"],
                name=m["name"],
                tool_call_id=m["tool_call_id"],
                tool_calls=loads(m["tool_calls"], []) or [],
            )
            for m in messages
        ]
        return sample

    def _scores(self, run_id: str) -> dict[str, list[ScoreView]]:
        found: dict[str, list[ScoreView]] = defaultdict(list)
        if not self.has("eval_scores"):
            return found
        sql = "select * from eval_scores where run_id = ? order by sample_id, scorer"
        for s in self.rows(sql, [run_id]):
            fields = {k: s[k] for k in ScoreView.model_fields}
            found[s["sample_id"]].append(ScoreView(**{**fields, "value": _text(s["value"])}))
        return found

    def _run(self, row: Row, *, with_samples: bool) -> EvalRunView:
        run_id = row["run_id"]
        samples = (
            self.rows("select * from eval_samples where run_id = ? order by sample_id", [run_id])
            if self.has("eval_samples")
            else []
        )
        trace = self.rows(_RUN_TRACE, [run_id])
        run = EvalRunView(
            run_id=run_id,
            family=row["family"],
            model=row["model"],
            via_proxy=row["via_proxy"],
            status=row["status"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            n_samples=row["n_samples"],
            cache_enabled=bool(row["cache_enabled"]),
            options=loads(row["options"], {}) or {},
            trace_id=trace[0]["trace_id"] if trace else None,
            done=sum(s["status"] == "done" for s in samples),
            failed=sum(s["status"] not in ("done", None) for s in samples),
        )
        scores = self._scores(run_id)
        run.scores = _summarise([s for per in scores.values() for s in per])
        if with_samples:
            run.samples = [_sample(s) for s in samples]
            for sample in run.samples:
                sample.scores = scores[sample.sample_id]
        return run


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _sample(row: Row) -> EvalSampleView:
    fields = {k: row[k] for k in EvalSampleView.model_fields if k in row}
    return EvalSampleView(**{**fields, "metadata": loads(row.get("metadata"), {}) or {}})


def _summarise(scores: list[ScoreView]) -> list[ScoreSummary]:
    by: dict[str, list[ScoreView]] = defaultdict(list)
    for s in scores:
        by[s.scorer].append(s)
    out = []
    for scorer, items in sorted(by.items()):
        nums = [s.numeric for s in items if s.numeric is not None]
        mean = sum(nums) / len(nums) if nums else None
        out.append(ScoreSummary(scorer=scorer, n=len(items), scored=len(nums), mean=mean))
    return out
