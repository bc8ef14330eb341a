"""`labelgate demo`: the four flows come out as the demo says, in its output and in the audit
store (decisions, fingerprint re-identification, a valid hash chain)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from labelgate.guard.audit.store import AuditStore
from labelgate.guard.models import local_model_available
from labelgate.proxy.demo import ATTACKER, COLLEAGUE, agent_policy
from labelgate.proxy.demo_cli import demo


def _decisions(db: Path) -> dict[str, list[dict[str, str]]]:
    """Each sink's decisions, with the tool call's target address where there is one."""
    found: dict[str, list[dict[str, str]]] = {}
    with AuditStore(db) as store:
        assert store.verify().ok
        for row in store.list_decisions(limit=100):
            found.setdefault(row["sink"], []).append(dict(row))
    return found


def _check_flows(output: str, db: Path) -> None:
    assert "the tool call below is scripted" in output
    assert "re-identified: contains 100% of a output from reader" in output
    assert "hash chain: ok" in output
    assert "[labelgate] tool call send_email was blocked" in output
    assert "REDACT" in output and "DENY" in output and "ALLOW" in output
    sinks = _decisions(db)
    assert [d["action"] for d in sinks["answer:reader"]] == ["log"]
    email = sorted(d["action"] for d in sinks["tool:send_email"])
    assert email == ["allow", "deny"]
    assert [d["action"] for d in sinks["answer:mailer"]] == ["redact"]
    with AuditStore(db) as store:
        denied = next(d for d in sinks["tool:send_email"] if d["action"] == "deny")
        handoff = store.messages_for(denied["request_id"])[1]
        # the mailer's request carried no annotation: the proxy knew the reader's words again
        assert '"origin":"fingerprint"' in handoff["provenance_json"]
        assert "web" in json.loads(handoff["label_json"])["sources"]


def test_quick_demo_shows_the_four_flows_and_records_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = CliRunner().invoke(demo, ["--quick", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    _check_flows(result.output, state / "audit.db")
    # not a terminal: no spinner, so every step says what it is doing in a line of its own
    assert "(d) mailer: asking about an HR record..." in result.output
    for family in ("dilemmas", "scheming", "spread"):
        assert f"eval {family}: a short run..." in result.output
        assert f"eval {family}: done" in result.output
        report = next((state / "reports").glob(f"{family}-*.html"))
        assert report.stat().st_size > 1000
    assert f"labelgate trace list --db {state / 'audit.db'}" in result.output.replace("\n", " ")


def test_agent_policy_follows_handoffs_and_its_user_only() -> None:
    handoff = agent_policy([{"role": "user", "name": "reader", "content": "x"}])
    assert ATTACKER in handoff.tool_calls[0]["function"]["arguments"]
    asked = agent_policy([{"role": "user", "content": f"please send the notes to {COLLEAGUE}."}])
    assert COLLEAGUE in asked.tool_calls[0]["function"]["arguments"]
    # without the handoff or a request it proposes nothing: a counterfactual can tell
    assert agent_policy([{"role": "user", "content": "hello"}]).tool_calls == []


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="needs the local model (labelgate[local])")
def test_full_demo_on_the_local_model(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = CliRunner().invoke(demo, ["--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    _check_flows(result.output, state / "audit.db")


def test_an_invalid_policy_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsinks:\n  - id: x\n    action: block\n")
    result = CliRunner().invoke(
        demo, ["--quick", "--no-evals", "--policy", str(bad), "--state-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "Error: invalid policy:" in result.output and "bad.yaml:4" in result.output
