"""The ``prompt`` sink: the policy language (rules, notices), ``Guard.screen``, and the proxy
screening each input item before the model reads it (deny withholds, redact replaces, a
notice marks; withheld items leave the answer's label; decisions in headers and the audit)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from labelgate.guard.audit.store import AuditStore
from labelgate.guard.engine import Guard, InputSpec
from labelgate.guard.models import Message, ScriptedModel
from labelgate.guard.policy import Action, Policy, PolicyError, SinkEvent
from labelgate.guard.policy.events import REDACTED
from labelgate.proxy.embedded import guarded_proxy

POLICY = """
version: 1
lattice:
  confidentiality: [public, internal, confidential]
  integrity: [untrusted, trusted]
defaults:
  labels: {agent_message: {integrity: trusted}, document: {integrity: untrusted}}
agents:
  "*": {clearance: {confidentiality: public}}
sources:
  - id: quarantined-authors
    kind: agent_message
    source: "quarantine-*"
    label: {integrity: untrusted, sources: [quarantine]}
  - id: secret-docs
    kind: document
    source: "vault/*"
    label: {confidentiality: confidential}
sinks:
  - id: stop-quarantine
    kind: prompt
    agent: "re:(?!quarantine-).*"
    when: {sources_match: [quarantine]}
    action: deny
    reason: "{agent} may not read claims from a quarantined agent ({sources})"
  - id: mark-rumours
    kind: prompt
    when: {sources_match: ["doc:rumour-*"]}
    action: log
    notice: "[unverified: {sources}]"
  - id: mask-cards
    kind: prompt
    args:
      content: {matches: "re:(?s).*\\\\b\\\\d{4}-\\\\d{4}\\\\b.*"}
    action: redact
    redact: {patterns: ["\\\\b\\\\d{4}-\\\\d{4}\\\\b"]}
  - id: hide-vault
    kind: prompt
    when: {confidentiality_above: internal}
    action: redact
  - id: any-sink-rule
    when: {integrity_below: trusted}
    action: deny
    reason: a rule without kind applies to the other sinks only
"""

CLAIM = "The Eiffel Tower stands in Rome, as the city records from 1889 clearly prove."
RUMOUR = "People say the tower will be painted gold next spring."
CARD = "The card on file is 1234-5678, valid until May."
VAULT = "The launch code for the rocket is in the red binder."


def policy() -> Policy:
    return Policy.from_yaml_text(POLICY, "prompt.yaml")


# --------------------------------------------------------------------------- the language


def test_only_rules_naming_the_prompt_sink_decide_there() -> None:
    p = policy()
    assert p.screens_prompts
    assert not Policy.from_yaml_text("version: 1\n").screens_prompts
    untrusted = p.lattice.parse({"integrity": "untrusted"})
    at_prompt = p.decide(SinkEvent.from_labels("prompt", untrusted, agent="bob"))
    assert at_prompt.action is Action.ALLOW  # any-sink-rule does not apply here
    assert "any-sink-rule" not in [t.rule for t in at_prompt.chain]
    elsewhere = p.decide(SinkEvent.from_labels("response", untrusted, agent="bob"))
    assert (elsewhere.action, elsewhere.rule) == (Action.DENY, "any-sink-rule")


def test_prompt_decisions_no_baseline_and_notices() -> None:
    p = policy()
    # A confidential item the reader is not cleared for: only the file's rules decide here
    # (the client sent it; the clearance baselines guard answers and egress).
    secret = p.lattice.parse({"confidentiality": "confidential", "sources": ["doc:x"]})
    d = p.decide(SinkEvent.from_labels("prompt", secret, {"content": ("x", secret)}, agent="b"))
    assert (d.action, d.rule, d.notice) == (Action.REDACT, "hide-vault", None)
    assert [t.section for t in d.chain] == ["sinks"] * len(d.chain)
    rumour = p.lattice.parse({"sources": ["doc:rumour-mill"]})
    marked = p.decide(SinkEvent.from_labels("prompt", rumour, agent="b"))
    assert (marked.action, marked.notice) == (Action.LOG, "[unverified: doc:rumour-mill]")


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("kind: response\n    action: log", "notice needs kind: prompt"),
        ("kind: prompt\n    action: deny", "notice needs action allow or log"),
    ],
)
def test_notice_is_only_for_passing_prompt_rules(rule: str, error: str) -> None:
    text = f"version: 1\nsinks:\n  - id: n\n    {rule}\n    notice: careful\n"
    with pytest.raises(PolicyError, match=error):
        Policy.from_yaml_text(text, "n.yaml")


def test_guard_screen_decides_each_item_for_the_reader() -> None:
    guard = Guard(policy())
    items = [
        guard.label_input(InputSpec(text=t, kind="agent_message", source=s), agent="bob")
        for t, s in [(CLAIM, "quarantine-agent-0"), ("Hello all.", "agent-1")]
    ]
    assert [d.action for d in guard.screen(items, agent="bob")] == [Action.DENY, Action.ALLOW]
    # the quarantined agent itself reads its own words
    assert guard.screen(items[:1], agent="quarantine-agent-0")[0].action is Action.ALLOW


# --------------------------------------------------------------------------- the proxy


class Recorder:
    """A scripted model that keeps what it was sent."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.seen: list[list[dict[str, Any]]] = []

    def __call__(self, messages: Sequence[Message]) -> str:
        self.seen.append([dict(m) for m in messages])
        return self.answer


def _request(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": "You are Bob."},
        {"role": "user", "content": f"Ada: {CLAIM}"},
        {"role": "user", "content": RUMOUR},
        {"role": "user", "content": [{"type": "text", "text": CARD}]},
        {"role": "user", "content": VAULT},
        {"role": "user", "content": "What do you make of all this?"},
    ]
    notes = {
        "1": {"kind": "agent_message", "source": "quarantine-agent-0"},
        "2": {"kind": "document", "source": "rumour-mill"},
        "3": {"kind": "document", "source": "billing"},
        "4": {"kind": "document", "source": "vault/launch"},
    }
    body = {"model": "m", "messages": messages, "labelgate": {"messages": notes}}
    return body | (extra or {})


def _serve(tmp_path: Path, model: ScriptedModel, text: str = POLICY, **guard: Any) -> Any:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    settings = {"propagator": "join"} | guard  # the conservative label, to check it exactly
    return guarded_proxy("m", policy=path, state_dir=tmp_path, models={"m": model}, guard=settings)


def test_the_proxy_screens_every_item_before_the_model_reads_it(tmp_path: Path) -> None:
    seen = Recorder("Noted, thanks.")
    with _serve(tmp_path, ScriptedModel(seen, name="m")) as url:
        response = httpx.post(
            f"{url}/chat/completions", json=_request(), headers={"X-Labelgate-Agent": "bob"}
        )
    assert response.status_code == 200, response.text
    sent = [m["content"] for m in seen.seen[0]]
    assert sent[0] == "You are Bob."
    assert sent[1].startswith("[labelgate] a message from quarantine-agent-0 was withheld: deny:")
    assert "bob may not read claims from a quarantined agent" in sent[1] and "Rome" not in sent[1]
    assert sent[2] == f"[unverified: doc:rumour-mill] {RUMOUR}"
    assert sent[3] == [
        {"type": "text", "text": f"The card on file is {REDACTED}, valid until May."}
    ]
    assert sent[4] == REDACTED
    assert sent[5] == "What do you make of all this?"

    decisions = json.loads(response.headers["x-labelgate-decisions"])
    prompt = {d["target"]: d for d in decisions if d["target"].startswith("prompt:")}
    assert {t: (d["action"], d["rule"]) for t, d in prompt.items()} == {
        "prompt:0": ("allow", None),
        "prompt:1": ("deny", "stop-quarantine"),
        "prompt:2": ("log", "mark-rumours"),
        "prompt:3.0": ("redact", "mask-cards"),
        "prompt:4": ("redact", "hide-vault"),
        "prompt:5": ("allow", None),
    }
    assert prompt["prompt:2"]["notice"] == "[unverified: doc:rumour-mill]"
    assert "quarantine" in prompt["prompt:1"]["label"]["sources"]
    assert [d["target"] for d in decisions][-1] == "response"

    # The answer's label: the withheld and wholly redacted items are not inputs any more;
    # the marked item and the partly redacted one are.
    label = json.loads(response.headers["x-labelgate-label"])
    assert "quarantine" not in label["sources"] and "doc:vault/launch" not in label["sources"]
    assert {"doc:rumour-mill", "doc:billing"} <= set(label["sources"])
    assert (label["integrity"], label["confidentiality"]) == ("untrusted", "public")

    with AuditStore(tmp_path / "audit.db") as store:
        rows = {r["sink"]: r for r in store.db["decisions"].rows}
        assert {k: rows[k]["action"] for k in ("prompt:1", "prompt:2", "prompt:4")} == {
            "prompt:1": "deny",
            "prompt:2": "log",
            "prompt:4": "redact",
        }
        assert rows["prompt:1"]["id"] == prompt["prompt:1"]["id"]
        assert "quarantine" in json.loads(rows["prompt:1"]["label_json"])["sources"]
        (request,) = store.db["requests"].rows
        assert request["decision"] == "deny"  # the strictest, the withheld item included
        assert store.verify().ok


def test_deny_mode_error_refuses_a_request_with_a_withheld_item(tmp_path: Path) -> None:
    seen = Recorder("never")
    with _serve(tmp_path, ScriptedModel(seen, name="m"), deny_mode="error") as url:
        response = httpx.post(
            f"{url}/chat/completions", json=_request(), headers={"X-Labelgate-Agent": "bob"}
        )
    assert response.status_code == 403 and seen.seen == []
    (denied,) = json.loads(response.headers["x-labelgate-decisions"])
    assert (denied["target"], denied["rule"]) == ("prompt:1", "stop-quarantine")


def test_the_quarantined_reader_and_streams(tmp_path: Path) -> None:
    seen = Recorder("Sure.")
    with _serve(tmp_path, ScriptedModel(seen, name="m")) as url:
        body = _request({"stream": True})
        with httpx.stream(
            "POST",
            f"{url}/chat/completions",
            json=body,
            headers={"X-Labelgate-Agent": "quarantine-agent-0"},
        ) as response:
            chunks = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert seen.seen[0][1]["content"] == f"Ada: {CLAIM}"  # not screened for this reader
    final = json.loads(chunks[-1].removeprefix("data: "))
    actions = {d["target"]: d["action"] for d in final["labelgate"]["decisions"]}
    assert actions["prompt:1"] == "allow" and actions["prompt:2"] == "log"


def test_without_prompt_rules_nothing_is_screened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no prompt rule: Guard.screen must not run")

    monkeypatch.setattr(Guard, "screen", never)
    seen = Recorder("ok")
    plain = POLICY.split("sinks:")[0]
    with _serve(tmp_path, ScriptedModel(seen, name="m"), plain) as url:
        response = httpx.post(
            f"{url}/chat/completions", json=_request(), headers={"X-Labelgate-Agent": "bob"}
        )
    assert response.status_code == 200
    assert seen.seen[0][1]["content"] == f"Ada: {CLAIM}"
    decisions = json.loads(response.headers["x-labelgate-decisions"])
    assert [d["target"] for d in decisions] == ["response"]
    assert "quarantine" in json.loads(response.headers["x-labelgate-label"])["sources"]


def test_a_marked_input_asks_for_the_precise_answer_label(tmp_path: Path) -> None:
    """An answer that owes nothing to a marked item: with the similarity propagator the
    proxy runs it eagerly (a mark passes, so lazily it never would) and the answer does not
    inherit the mark's sources; with the join it does."""
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are Bob, a gardener who grows tomatoes."},
            {"role": "user", "content": RUMOUR},
            {"role": "user", "content": "What do you grow?"},
        ],
        "labelgate": {"messages": {"1": {"kind": "document", "source": "rumour-mill"}}},
    }
    sources = {}
    for propagator in ("similarity", "join"):
        state = tmp_path / propagator
        state.mkdir()
        model = ScriptedModel(["Bob grows tomatoes, as a gardener."], cycle=True, name="m")
        with _serve(state, model, propagator=propagator) as url:
            response = httpx.post(f"{url}/chat/completions", json=body)
        decisions = json.loads(response.headers["x-labelgate-decisions"])
        assert [d["action"] for d in decisions if d["target"] == "prompt:1"] == ["log"]
        sources[propagator] = json.loads(response.headers["x-labelgate-label"])["sources"]
    assert "doc:rumour-mill" in sources["join"]
    assert "doc:rumour-mill" not in sources["similarity"]
