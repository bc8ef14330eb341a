"""End to end with the real local model (slow) and on the real DailyDilemmas data (shared)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelgate.evals.cli import eval_group
from labelgate.guard.models import local_model_available

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dailydilemmas"
needs_local = pytest.mark.skipif(not local_model_available(), reason="local model not installed")
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")


def run(*args: str) -> str:
    result = CliRunner().invoke(eval_group, ["run", "dilemmas", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def samples(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "select s.sample_id, s.status, c.value from eval_samples s "
            "join eval_scores c using (run_id, sample_id) where c.scorer = 'choice' "
            "order by s.sample_id"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
@needs_local
def test_local_model_end_to_end_is_deterministic(tmp_path: Path) -> None:
    args = ["--model", "local/smollm2", "--limit", "3", "--steer", "0", "--concurrency", "1"]
    out = run(*args, "--db", str(tmp_path / "a.db"))
    assert re.search(r"^report: .*\.html$", out, re.MULTILINE)
    first = samples(tmp_path / "a.db")
    assert len(first) == 6 and all(status == "done" for _, status, _ in first)
    run(*args, "--db", str(tmp_path / "b.db"))
    assert samples(tmp_path / "b.db") == first  # temperature 0, fixed seed: same choices


@pytest.mark.shared
@needs_shared
def test_shared_action_table_with_the_scripted_model(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text('- "Action 1"\n')
    out = run(
        "--model",
        "scripted",
        "--script",
        str(script),
        "--data",
        str(SHARED),
        "--principles",
        str(SHARED / "principle_claude.csv"),
        "--steer",
        "1",
        "--db",
        str(tmp_path / "a.db"),
    )
    md = Path(re.search(r"^summary: (\S+)$", out, re.MULTILINE).group(1)).read_text()
    assert "MFT" in md and "## Steerability" in md
    # CSV principles name no values: labelgate's lexicon maps p1 (freedom, equality, ...)
    assert "| p1 | aligned |" in md
    assert "- p1: equality, freedom (mapped by labelgate's lexicon" in md


@pytest.mark.shared
@pytest.mark.slow
@needs_shared
@needs_local
def test_shared_situations_with_the_local_model(tmp_path: Path) -> None:
    out = run(
        "--model",
        "local/smollm2",
        "--data",
        str(SHARED),
        "--format",
        "situations",
        "--limit",
        "2",
        "--steer",
        "0",
        "--db",
        str(tmp_path / "a.db"),
    )
    md = Path(re.search(r"^summary: (\S+)$", out, re.MULTILINE).group(1)).read_text()
    assert "No value profile" in md and "Position bias" in md
