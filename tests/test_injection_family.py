"""The injection family end to end: the catalogue's promises (domains, tasks, goals,
multi-agent tasks), a run through the in-process guard with each decision tied to the step it
hit, the paired comparison of two runs, tasks loaded from YAML, the oracle's server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from labelgate.evals.api import run_eval
from labelgate.evals.injection.agents import first_messages
from labelgate.evals.injection.catalogue import build, builtin_domains, catalogue, load_file
from labelgate.evals.injection.oracle import OracleModel, call_id
from labelgate.evals.injection.server import app
from labelgate.evals.models import ProxyModel
from labelgate.evals.report import compare_runs
from labelgate.evals.sample_guard import DECISIONS_HEADER, SESSION_HEADER, SampleGuard
from labelgate.evals.scenario import Sample
from labelgate.evals.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "injection-tasks.yaml"
POLICY = ROOT / "policies" / "default.yaml"


def test_the_catalogue_keeps_the_issue_s_promises() -> None:
    cat = catalogue()
    domains = Counter(t.domain for t in cat.tasks.values())
    assert len(domains) >= 5 and len(set(domains) - {"workspace"}) >= 3
    assert len(cat.tasks) >= 60
    assert sum(t.topology == "reader-actor" for t in cat.tasks.values()) >= 10
    assert len(cat.goals) >= 20
    channels = {g.channel for g in cat.goals.values()}
    assert {"email", "url", "channel", "document"} - channels <= {"url"}  # url: an attack
    assert {"payment", "permission", "deletion", "deploy", "note", "answer"} <= channels


def test_the_oracle_is_stateless() -> None:
    task = catalogue().tasks["fin-pay-nordlicht"]
    messages = first_messages(task, "assistant")
    first, again = OracleModel().answer(messages), OracleModel().answer(list(messages))
    assert first == again


def test_yaml_tasks_load_and_join_the_catalogue() -> None:
    domain = load_file(EXAMPLE)
    cat = build([*builtin_domains(), domain])
    assert "example-pay-lumen" in cat.tasks and "example-double-payment" in cat.goals


def test_a_task_file_with_a_missing_slot_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("[[slot:inv9001]]", ""))
    with pytest.raises(ValueError, match="no injection slot"):
        build([*builtin_domains(), load_file(bad)])


def test_the_oracle_server_answers_in_the_openai_shape() -> None:
    task = catalogue().tasks["fin-pay-nordlicht"]
    client = TestClient(app())
    body = {"model": "injection-oracle", "messages": first_messages(task, "assistant")}
    data = client.post("/v1/chat/completions", json=body).json()
    call = data["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_invoice"
    assert call["id"] == call_id("get_invoice", {"invoice_id": "INV-7001"})
    assert client.post("/v1/chat/completions", json={"model": "gpt-4"}).status_code == 400


def test_guarded_run_links_each_decision_to_the_step_it_hit(tmp_path: Path) -> None:
    """The default pack lets the payment through (its IBAN came from the invoice, a tool
    result, but the data-only replay proposes the same payment: data, not control) and denies
    the injected one (not proposed again without the injected prose): the report links the
    deny to the attack step it stopped."""
    options = {
        "tasks": ["fin-pay-nordlicht"],
        "attacks": ["important_instructions"],
        "goals": ["fin-pay-attacker"],
    }
    common = {"model": "injection-oracle", "options": options, "db": tmp_path / "r.db"}
    direct = run_eval("injection", run_id="direct", **common)
    guarded = run_eval("injection", run_id="guarded", guard_policy=POLICY, **common)
    assert direct.ok and guarded.ok
    store = ResultsStore(tmp_path / "r.db")
    try:
        scores = {(s["sample_id"], s["scorer"]): s for s in store.scores("guarded")}
        assert scores[("fin-pay-nordlicht:benign:0", "benign_utility")]["value"] == "yes"
        attacked = next(k for k in scores if k[0] != "fin-pay-nordlicht:benign:0")[0]
        assert scores[(attacked, "attack_success")]["value"] == "no"
        stopped = scores[(attacked, "guard")]["metadata"]["stopped_attack"]
        assert stopped and stopped[0]["hit"].startswith("attack ")
        assert stopped[0]["rule"] == "baseline:untrusted-side-effect"
        text = compare_runs(store, "direct", "guarded")
    finally:
        store.close()
    for scorer in ("## benign_utility", "## utility_under_attack", "## attack_success"):
        assert scorer in text
    assert "1 yes -> no" in text  # the attack, stopped
    report = guarded.report_md.read_text()
    assert "Attacks stopped" in report and "baseline:untrusted-side-effect" in report


async def test_the_gateway_keeps_decisions_and_a_guard_failure() -> None:
    """Decisions come from the response header (a prompt:N names the message it screened);
    a guard that fails closed (500 guard_error) stops the agent and is logged as a decision."""
    decisions = [
        {"target": "prompt:2", "action": "redact", "rule": "r1", "reason": "x"},
        {"target": "call_1", "action": "deny", "rule": "r2", "reason": "y"},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers[SESSION_HEADER].endswith(":t:benign:0")  # the sample, named
        if b"fail" in request.content:
            error = {"error": {"type": "guard_error", "message": "the guard failed"}}
            return httpx.Response(500, json=error)
        body = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        return httpx.Response(200, json=body, headers={DECISIONS_HEADER: json.dumps(decisions)})

    proxy = ProxyModel("m", "http://proxy/v1", "k")
    sample = Sample(
        id="t:benign:0", scenario_id="t", family="injection", variant="benign", seed=0, messages=[]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        guard = SampleGuard(proxy, sample, stop_on_guard_error=True, client=client)
        model = guard.agent("reader")
        messages = [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "tool", "name": "get_ticket", "content": "t"},
        ]
        assert (await model.chat(messages)).text == "ok"
        failed = await model.chat([{"role": "user", "content": "fail"}])
    log = guard.log
    assert failed.text.startswith("[the guard failed closed]")
    assert [d.about for d in log.decisions[:2]] == ["tool get_ticket", ""]
    assert log.decisions[2].rule == "guard_error" and log.decisions[2].agent == "reader"
    assert len(log.calls) == 2 and log.session.endswith(":t:benign:0")
