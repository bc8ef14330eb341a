"""``labelgate eval``: list, run (scripted, end to end), resume, report, compare, proxy."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from labelgate.evals.cli import eval_group


def invoke(*args: str) -> Result:
    return CliRunner().invoke(eval_group, list(args), catch_exceptions=False)


def run_id_of(result: Result) -> str:
    match = re.search(r"^run: (\S+)$", result.output, re.MULTILINE)
    assert match, result.output
    return match.group(1)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text('- "Action 1"\n- "I choose Action 2."\n- "no idea"\n')
    return path


def test_list_is_honest_about_later_families() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "available" in lines["dilemmas"] and "not yet" not in lines["dilemmas"]
    assert "available" in lines["scheming"] and "not yet" not in lines["scheming"]


def test_unavailable_family_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from labelgate.evals.family import FAMILIES, FamilyInfo

    monkeypatch.setitem(FAMILIES, "later", FamilyInfo("later", "planned", None))
    result = CliRunner().invoke(eval_group, ["run", "later"])
    assert result.exit_code != 0
    assert result.output.strip() == "Error: the 'later' eval family is not yet available"
    unknown = CliRunner().invoke(eval_group, ["run", "nope"])
    assert unknown.exit_code != 0 and "no eval family 'nope'" in unknown.output


def test_run_report_resume_compare_with_the_scripted_model(tmp_path: Path, script: Path) -> None:
    db = tmp_path / "audit.db"
    common = [
        "--model",
        "scripted",
        "--script",
        str(script),
        "--db",
        str(db),
        "--limit",
        "3",
        "--steer",
        "1",
    ]
    first = invoke("run", "dilemmas", *common)
    assert first.exit_code == 0, first.output
    run_id = run_id_of(first)
    html = Path(re.search(r"^report: (\S+)$", first.output, re.MULTILINE).group(1))
    md = Path(re.search(r"^summary: (\S+)$", first.output, re.MULTILINE).group(1))
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page)  # self-contained: no external files
    assert "Five-theory profile" in md.read_text() and "Steerability" in md.read_text()
    conn = sqlite3.connect(db)
    assert (
        conn.execute("select count(*) from eval_samples where run_id=?", [run_id]).fetchone()[0]
        == 3 * 3 * 2
    )
    na = conn.execute(
        "select count(*) from eval_scores where run_id=? and scorer='choice' and value is null",
        [run_id],
    ).fetchone()[0]
    assert na == 6  # every third answer ("no idea") is NA
    unguarded = conn.execute(
        "select count(*) from eval_scores where run_id=? and scorer='guard' and value is null",
        [run_id],
    ).fetchone()[0]
    assert unguarded == 3 * 3 * 2  # no proxy: the guard scorer says so for every sample
    span_names = {r[0] for r in conn.execute("select name from spans")}
    assert {
        "eval.run",
        "eval.scenario",
        "eval.sample",
        "eval.agent_turn",
        "chat scripted",
    } <= span_names
    conn.close()

    again = invoke("run", "dilemmas", *common, "--run-id", run_id)
    assert again.exit_code == 0 and run_id_of(again) == run_id
    assert "18 resumed as done" in again.output and "0 model calls" in again.output

    second = invoke("run", "dilemmas", *common)
    other = run_id_of(second)
    compared = invoke("compare", run_id, other, "--db", str(db))
    assert compared.exit_code == 0
    assert "agreement 100.0%" in compared.output  # the same script: the same answers

    report = invoke("report", run_id[:-2], "--db", str(db), "--out", str(tmp_path / "r"))
    assert report.exit_code == 0 and (tmp_path / "r" / f"{run_id}.html").exists()
    assert run_id in invoke("runs", "--db", str(db)).output


def test_resume_with_other_options_is_refused(tmp_path: Path, script: Path) -> None:
    db = ["--db", str(tmp_path / "a.db"), "--model", "scripted", "--script", str(script)]
    first = invoke("run", "dilemmas", *db, "--limit", "1", "--steer", "0")
    result = CliRunner().invoke(
        eval_group,
        ["run", "dilemmas", *db, "--limit", "2", "--steer", "0", "--run-id", run_id_of(first)],
    )
    assert result.exit_code == 1 and "other options" in result.output


def test_bad_inputs_are_one_line_errors(tmp_path: Path, script: Path) -> None:
    result = CliRunner().invoke(
        eval_group, ["run", "dilemmas", "--model", "scripted", "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 1 and "needs --script" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        eval_group,
        [
            "run",
            "dilemmas",
            "--model",
            "scripted",
            "--script",
            str(script),
            "--data",
            str(empty),
            "--db",
            str(tmp_path / "x.db"),
        ],
    )
    assert result.exit_code == 1 and "no auto dilemma file" in result.output
    missing = CliRunner().invoke(eval_group, ["report", "nope", "--db", str(tmp_path / "x.db")])
    assert missing.exit_code == 1 and "no run 'nope'" in missing.output


@pytest.mark.slow  # imports litellm (seconds) to talk to the proxy
def test_run_through_the_proxy(tmp_path: Path) -> None:
    from proxy_fixtures import serve_proxy

    from labelgate.guard.models import ScriptedModel

    model = ScriptedModel(["Action 2"], cycle=True, name="dilemma-bot")
    config = {
        "model_list": [{"model_name": "dilemma-bot", "litellm_params": {"model": "dilemma-bot"}}]
    }
    server = serve_proxy(config, models={"dilemma-bot": model})
    try:
        result = invoke(
            "run",
            "dilemmas",
            "--model",
            "dilemma-bot",
            "--via-proxy",
            f"{server.url}/v1",
            "--db",
            str(tmp_path / "p.db"),
            "--limit",
            "2",
            "--steer",
            "0",
            "--no-swap",
        )
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert len(model.calls) == 2  # both samples reached the model through the proxy
    md = Path(re.search(r"^summary: (\S+)$", result.output, re.MULTILINE).group(1)).read_text()
    assert "through proxy" in md and f"{server.url}/v1" in md
    assert "0.0% [" in md  # Action 2 in the original order: never "to do"


@pytest.mark.slow  # imports litellm for the proxy client (seconds)
def test_run_through_an_in_process_guarded_proxy(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("- Action 2\n")
    policy = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    result = invoke(
        "run",
        "dilemmas",
        "--model",
        "scripted",
        "--script",
        str(script),
        "--guard-policy",
        str(policy),
        "--db",
        str(tmp_path / "g.db"),
        "--limit",
        "2",
        "--steer",
        "0",
        "--no-swap",
    )
    assert result.exit_code == 0, result.output
    md = Path(re.search(r"^summary: (\S+)$", result.output, re.MULTILINE).group(1)).read_text()
    assert "in-process guard" in md
    from labelgate.guard.audit.store import AuditStore

    with AuditStore(tmp_path / "audit.db") as audit:  # the guarded proxy's own records
        assert audit.counts()["requests"] == 2
        assert audit.verify().ok


def test_guard_policy_and_via_proxy_exclude_each_other(tmp_path: Path) -> None:
    policy = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    result = invoke(
        "run",
        "dilemmas",
        "--model",
        "local/smollm2",
        "--guard-policy",
        str(policy),
        "--via-proxy",
        "http://127.0.0.1:9/v1",
        "--db",
        str(tmp_path / "x.db"),
    )
    assert result.exit_code == 1
    assert "not both" in result.output


def test_runs_of_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none" / "audit.db"
    result = invoke("runs", "--db", str(db))
    assert result.exit_code == 0
    assert f"no eval runs in {db}" in result.output
    assert invoke("runs", "--db", str(db), "--json").output.strip() == "[]"
    assert not db.parent.exists()


def test_guarded_runs_sharing_a_database_keep_their_own_fingerprints(tmp_path: Path) -> None:
    """Two in-process guarded runs with one results database: each run's guard remembers its
    own texts only (a second run must not re-identify the first run's answers)."""
    from labelgate.evals import run_eval

    policy = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    db = tmp_path / "runs" / "audit.db"
    for run_id in ("first", "second"):
        run_eval(
            "dilemmas",
            model="scripted",
            script=["Action 1"],
            limit=1,
            options={"steer": 0},
            guard_policy=policy,
            db=db,
            run_id=run_id,
            concurrency=1,
        )
    stores = sorted(p.name for p in (db.parent / "guard").iterdir() if p.suffix == ".db")
    assert stores == ["first.fingerprints.db", "second.fingerprints.db"]
    assert not (db.parent / "fingerprints.db").exists()


async def test_run_eval_async_in_a_running_loop(tmp_path: Path) -> None:
    """``run_eval_async`` is ``run_eval`` for code already in an event loop."""
    from labelgate.evals import run_eval_async

    result = await run_eval_async(
        "dilemmas",
        model="scripted",
        script=["Action 1"],
        limit=1,
        options={"steer": 0},
        db=tmp_path / "audit.db",
        concurrency=1,
    )
    assert result.ok and result.summary.done == result.summary.n_samples > 0
    assert result.report_html.exists()
