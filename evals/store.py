"""Eval results in SQLite (sqlite-utils), beside the audit store in the same file by default.

Tables, all prefixed ``eval_`` and readable as they are (Datasette-friendly):

- ``eval_runs``: one row per run (family, model, options, status, cache use, report path).
- ``eval_samples``: one row per (run_id, sample_id): status, attempts, tokens, timing, trace id.
- ``eval_messages``: every transcript message, in order.
- ``eval_scores``: one row per (run_id, sample_id, scorer), with the grader when model-graded.
- ``eval_model_cache``: opt-in cache of model answers by request hash.

A run is resumable: samples whose row says ``done`` are skipped when the run is started again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

Row = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class ResultsStore:
    """Not for concurrent use from several threads without its lock: all writes hold it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
        self.db = Database(conn)
        if str(path) != ":memory:":
            self.db.enable_wal()
        self._lock = threading.RLock()
        self._migrate()

    def _migrate(self) -> None:
        db = self.db
        if not db.table("eval_runs").exists():
            db.table("eval_runs").create(
                {
                    "run_id": str,
                    "family": str,
                    "model": str,
                    "via_proxy": str,
                    "options": str,
                    "status": str,
                    "started_at": str,
                    "finished_at": str,
                    "n_samples": int,
                    "cache_enabled": int,
                    "report_path": str,
                },
                pk="run_id",
            )
        if not db.table("eval_samples").exists():
            db.table("eval_samples").create(
                {
                    "run_id": str,
                    "sample_id": str,
                    "scenario_id": str,
                    "variant": str,
                    "seed": int,
                    "status": str,
                    "error": str,
                    "attempts": int,
                    "stop_reason": str,
                    "turns": int,
                    "input_tokens": int,
                    "output_tokens": int,
                    "model_calls": int,
                    "cache_hits": int,
                    "started_at": str,
                    "finished_at": str,
                    "duration_s": float,
                    "trace_id": str,
                    "metadata": str,
                },
                pk=("run_id", "sample_id"),
            )
        if not db.table("eval_messages").exists():
            db.table("eval_messages").create(
                {
                    "run_id": str,
                    "sample_id": str,
                    "idx": int,
                    "role": str,
                    "content": str,
                    "tool_calls": str,
                    "tool_call_id": str,
                    "name": str,
                },
                pk=("run_id", "sample_id", "idx"),
            )
        if not db.table("eval_scores").exists():
            db.table("eval_scores").create(
                {
                    "run_id": str,
                    "sample_id": str,
                    "scorer": str,
                    "value": str,
                    "numeric": float,
                    "answer": str,
                    "explanation": str,
                    "grader": str,
                    "metadata": str,
                },
                pk=("run_id", "sample_id", "scorer"),
            )
        if not db.table("eval_model_cache").exists():
            db.table("eval_model_cache").create(
                {
                    "key": str,
                    "model": str,
                    "request": str,
                    "response": str,
                    "created_at": str,
                    "hits": int,
                },
                pk="key",
            )

    # ------------------------------------------------------------------ runs
    def start_run(
        self,
        run_id: str,
        family: str,
        model: str,
        options: dict[str, Any],
        *,
        via_proxy: str | None,
        cache_enabled: bool,
        n_samples: int,
    ) -> bool:
        """Record a run; return True if it existed already (a resume). Options must match."""
        with self._lock:
            existing = self.get_run(run_id)
            if existing is not None:
                if existing["family"] != family or existing["model"] != model:
                    raise ValueError(
                        f"run {run_id} exists for {existing['family']}/{existing['model']}; "
                        f"cannot resume it as {family}/{model}"
                    )
                if json.loads(existing["options"]) != json.loads(_json(options)):
                    raise ValueError(f"run {run_id} exists with other options; cannot resume")
                self.db.table("eval_runs").update(
                    run_id, {"status": "running", "n_samples": n_samples}
                )
                return True
            self.db.table("eval_runs").insert(
                {
                    "run_id": run_id,
                    "family": family,
                    "model": model,
                    "via_proxy": via_proxy,
                    "options": _json(options),
                    "status": "running",
                    "started_at": now(),
                    "finished_at": None,
                    "n_samples": n_samples,
                    "cache_enabled": int(cache_enabled),
                    "report_path": None,
                }
            )
            return False

    def finish_run(self, run_id: str, status: str) -> None:
        with self._lock:
            self.db.table("eval_runs").update(run_id, {"status": status, "finished_at": now()})

    def set_report_path(self, run_id: str, path: str) -> None:
        with self._lock:
            self.db.table("eval_runs").update(run_id, {"report_path": path})

    def get_run(self, run_id: str) -> Row | None:
        rows = list(self.db.table("eval_runs").rows_where("run_id = ?", [run_id]))
        return rows[0] if rows else None

    def find_run(self, prefix: str) -> Row:
        """A run by id or unique id prefix."""
        rows = list(self.db.table("eval_runs").rows_where("run_id like ?", [prefix + "%"]))
        exact = [r for r in rows if r["run_id"] == prefix]
        if exact:
            return exact[0]
        if len(rows) != 1:
            raise KeyError(
                f"no run {prefix!r}" if not rows else f"{prefix!r} matches {len(rows)} runs"
            )
        return rows[0]

    def list_runs(self) -> list[Row]:
        return list(self.db.table("eval_runs").rows_where(order_by="started_at desc"))

    # ------------------------------------------------------------------ samples
    def done_samples(self, run_id: str) -> set[str]:
        rows = self.db.execute(
            "select sample_id from eval_samples where run_id = ? and status = 'done'", [run_id]
        ).fetchall()
        return {r[0] for r in rows}

    def save_sample(self, row: Row, messages: list[Row], scores: list[Row]) -> None:
        """A finished (or failed) sample with its transcript and scores, in one transaction."""
        run_id, sample_id = row["run_id"], row["sample_id"]
        row = {**row, "metadata": _json(row.get("metadata", {}))}
        with self._lock, self.db.conn:
            self.db.execute(
                "delete from eval_messages where run_id = ? and sample_id = ?", [run_id, sample_id]
            )
            self.db.execute(
                "delete from eval_scores where run_id = ? and sample_id = ?", [run_id, sample_id]
            )
            self.db.table("eval_samples").upsert(row, pk=("run_id", "sample_id"))
            self.db.table("eval_messages").insert_all(
                [
                    {
                        "run_id": run_id,
                        "sample_id": sample_id,
                        "idx": i,
                        "role": m.get("role"),
                        "content": m.get("content"),
                        "tool_calls": _json(m["tool_calls"]) if m.get("tool_calls") else None,
                        "tool_call_id": m.get("tool_call_id"),
                        "name": m.get("name"),
                    }
                    for i, m in enumerate(messages)
                ]
            )
            self.db.table("eval_scores").insert_all(
                [
                    {
                        "run_id": run_id,
                        "sample_id": sample_id,
                        **s,
                        "metadata": _json(s.get("metadata", {})),
                    }
                    for s in scores
                ]
            )

    def samples(self, run_id: str) -> list[Row]:
        rows = list(
            self.db.table("eval_samples").rows_where("run_id = ?", [run_id], order_by="sample_id")
        )
        for row in rows:
            row["metadata"] = json.loads(row["metadata"] or "{}")
        return rows

    def scores(self, run_id: str) -> list[Row]:
        rows = list(
            self.db.table("eval_scores").rows_where("run_id = ?", [run_id], order_by="sample_id")
        )
        for row in rows:
            row["metadata"] = json.loads(row["metadata"] or "{}")
        return rows

    def messages(self, run_id: str, sample_id: str) -> list[Row]:
        return list(
            self.db.table("eval_messages").rows_where(
                "run_id = ? and sample_id = ?", [run_id, sample_id], order_by="idx"
            )
        )

    # ------------------------------------------------------------------ model cache
    def cache_get(self, key: str) -> Row | None:
        with self._lock:
            rows = list(self.db.table("eval_model_cache").rows_where("key = ?", [key]))
            if not rows:
                return None
            self.db.execute("update eval_model_cache set hits = hits + 1 where key = ?", [key])
            self.db.conn.commit()
            return json.loads(rows[0]["response"])

    def cache_put(self, key: str, model: str, request: Any, response: Row) -> None:
        with self._lock:
            self.db.table("eval_model_cache").upsert(
                {
                    "key": key,
                    "model": model,
                    "request": _json(request),
                    "response": _json(response),
                    "created_at": now(),
                    "hits": 0,
                },
                pk="key",
            )

    def close(self) -> None:
        self.db.conn.close()
