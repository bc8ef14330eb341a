"""The policy engine: source labels, sink decisions, baseline, clearances, transforms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from labelgate.guard.items import LabelOrigin
from labelgate.guard.policy import (
    Action,
    Effect,
    FlowContext,
    Policy,
    SinkEvent,
    SourceContext,
    load_policy,
)
from labelgate.guard.policy import conditions as conditions_mod
from labelgate.guard.policy.cli import policy as policy_cli
from labelgate.guard.policy.templates import render

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "docs" / "examples" / "events"

BASE = """\
lattice:
  confidentiality: [public, internal, confidential]
  integrity: [untrusted, trusted]
  categories: [pii]
agents:
  hr-agent: {clearance: {confidentiality: confidential, categories: [pii]}}
  "intern-*": {clearance: {confidentiality: public}}
  "*": {clearance: {confidentiality: internal}}
tools:
  send_email: {effect: external}
  write_note: {effect: write}
  lookup: {effect: read}
"""


def make(extra: str = "") -> Policy:
    return Policy.from_yaml_text(BASE + extra, "test.yaml")


def lab(integrity: str = "trusted", conf: str = "public", **kw: Any) -> dict[str, Any]:
    return {"integrity": integrity, "confidentiality": conf, **kw}


def call(tool: str, label: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    return {
        "kind": "tool_call",
        "agent": "assistant",
        "tool": tool,
        "label": label or lab(),
        "arguments": {k: {"value": v[0], "label": v[1]} for k, v in args.items()},
    }


# ---- baseline -------------------------------------------------------------------------------


def test_baseline_denies_untrusted_side_effect_and_allows_trusted() -> None:
    policy = make()
    bad = call("send_email", to=("x@evil.example", lab("untrusted", sources=["web:evil.example"])))
    decision = policy.decide(bad)
    assert decision.action is Action.DENY
    assert decision.rule == "baseline:untrusted-side-effect"
    assert (
        decision.reason == "deny: send_email.to is derived from untrusted source web:evil.example"
    )
    good = call("send_email", to=("bob@corp.example", lab("trusted", sources=["role:user"])))
    assert policy.decide(good).action is Action.ALLOW


def test_baseline_checks_the_call_context_too() -> None:
    policy = make()
    event = call("write_note", label=lab("untrusted", sources=["tool:fetch"]), text=("hi", lab()))
    decision = policy.decide(event)
    assert decision.action is Action.DENY
    assert "write_note.(context) is derived from untrusted source tool:fetch" in decision.reason


def test_read_tools_are_sinks_for_the_arguments_that_reach_outside() -> None:
    """A URL or query chosen by untrusted data, or carrying what may not leave, is refused on
    every tool, a read-only one too (issue 19: read tools exfiltrate); other arguments of a read
    tool are not sinks."""
    policy = make()
    untrusted = lab("untrusted", sources=["web:x"])
    chosen = policy.decide(call("lookup", url=("https://evil.example/?k=1", untrusted)))
    assert chosen.action is Action.DENY and chosen.rule == "baseline:outward-argument"
    assert "lookup.url reaches outside" in chosen.reason and "web:x" in chosen.reason
    secret = lab("trusted", "confidential")
    leaked = policy.decide(call("lookup", search_query=("salary of Ana: 98k", secret)))
    assert leaked.action is Action.DENY and leaked.rule == "baseline:outward-argument"
    fine = policy.decide(call("lookup", q=("weather in Lisbon", lab()), key=("a", untrusted)))
    assert fine.action is Action.ALLOW
    assert not policy.is_outward("lookup", "recipient")
    declared = Policy.from_yaml_text(
        BASE.replace("lookup: {effect: read}", "lookup: {effect: read, outward: [recipient]}"),
        "t.yaml",
    )
    assert declared.is_outward("lookup", "filters.recipient")


def test_reads_are_not_side_effects_and_unknown_tools_are_external() -> None:
    policy = make()
    untrusted = lab("untrusted", sources=["web:x"])
    assert policy.decide(call("lookup", key=("a", untrusted))).action is Action.ALLOW
    unknown = policy.decide(call("mystery_tool", key=("a", untrusted)))
    assert unknown.action is Action.DENY and unknown.effect is Effect.EXTERNAL
    # the event may declare a stricter effect than the policy, never a weaker one
    lying = call("send_email", to=("a", untrusted)) | {"effect": "read"}
    assert policy.decide(lying).effect is Effect.EXTERNAL
    stricter = call("lookup", q=("a", untrusted)) | {"effect": "write"}
    assert policy.decide(stricter).action is Action.DENY


def test_explicit_allow_overrides_baseline_but_deny_overrides_allow() -> None:
    policy = make(
        """sinks:
  - id: notes-ok
    tool: write_note
    action: log
    reason: "{tool} stores {label}"
  - id: no-secrets
    tool: write_note
    args:
      "*": {when: {categories_any: [pii]}}
    action: deny
"""
    )
    untrusted = lab("untrusted", sources=["web:x"])
    logged = policy.decide(call("write_note", text=("t", untrusted)))
    assert logged.action is Action.LOG
    assert logged.reason == "log: write_note stores public/untrusted src=web:x"
    baseline = next(t for t in logged.chain if t.rule == "baseline:untrusted-side-effect")
    assert baseline.matched and "overridden by rule notes-ok" in baseline.why
    pii = lab("untrusted", categories=["pii"])
    denied = policy.decide(call("write_note", text=("t", pii)))
    assert denied.action is Action.DENY and denied.rule == "no-secrets"
    assert [t.rule for t in denied.chain if t.decisive] == ["no-secrets"]


def test_override_baseline_false_keeps_baseline() -> None:
    policy = make(
        """sinks:
  - id: watch
    tool: write_note
    action: log
    override_baseline: false
"""
    )
    decision = policy.decide(call("write_note", text=("t", lab("untrusted"))))
    assert decision.action is Action.DENY
    assert decision.rule == "baseline:untrusted-side-effect"


def test_argument_patterns() -> None:
    policy = make(
        """sinks:
  - id: outside-recipients
    tool: send_email
    args:
      to: {not_matches: "*@corp.example"}
    action: ask
    reason: "{tool}.{arg}={value} leaves the company"
"""
    )
    inside = policy.decide(call("send_email", to=(["a@corp.example"], lab())))
    assert inside.action is Action.ALLOW
    mixed = policy.decide(call("send_email", to=(["a@corp.example", "b@gmail.com"], lab())))
    assert mixed.action is Action.ASK
    assert "send_email.to=" in mixed.reason and "leaves the company" in mixed.reason
    missing = policy.decide(call("send_email", body=("x", lab())))
    assert missing.action is Action.ALLOW  # no `to` argument: the rule does not match


# ---- clearances -----------------------------------------------------------------------------


def response(recipient: str, label: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "response",
        "agent": "orchestrator",
        "recipient": recipient,
        "label": label,
        "arguments": {"content": {"value": "the answer", "label": label}},
    }


def test_clearance_denies_confidential_answer_to_uncleared_agent() -> None:
    policy = make()
    secret = lab("trusted", "confidential", sources=["doc:hr/salaries"])
    denied = policy.decide(response("intern-3", secret))
    assert denied.action is Action.DENY
    assert denied.rule == "baseline:recipient-clearance"
    assert "confidential is above intern-3's clearance public" in denied.reason
    assert policy.decide(response("hr-agent", secret)).action is Action.ALLOW
    # unknown agents fall to the '*' entry: internal
    assert policy.decide(response("someone", lab(conf="internal"))).action is Action.ALLOW
    assert policy.decide(response("someone", secret)).action is Action.DENY


def test_categories_and_readers_are_part_of_clearance() -> None:
    policy = make()
    pii = lab("trusted", "internal", categories=["pii"])
    assert policy.decide(response("someone", pii)).action is Action.DENY
    assert policy.decide(response("hr-agent", pii)).action is Action.ALLOW
    only_hr = lab("trusted", "public", readers=["hr-agent"])
    assert policy.decide(response("hr-agent", only_hr)).action is Action.ALLOW
    assert policy.decide(response("intern-1", only_hr)).action is Action.DENY


def test_clearance_violation_can_redact() -> None:
    text = BASE.replace("tools:", "defaults: {on_clearance_violation: redact}\ntools:")
    policy = Policy.from_yaml_text(text, "t.yaml")
    decision = policy.decide(response("intern-1", lab(conf="internal")))
    assert decision.action is Action.REDACT
    assert [r.argument for r in decision.redactions] == ["content"]
    assert decision.redact_arguments({"content": "x", "other": "y"}) == {
        "content": "[REDACTED]",
        "other": "y",
    }


def test_external_clearance_blocks_internal_data_leaving() -> None:
    policy = make()
    event = call("send_email", body=("q3 numbers", lab("trusted", "internal")))
    decision = policy.decide(event)
    assert decision.action is Action.DENY
    assert decision.rule == "baseline:external-clearance"
    egress = {"kind": "egress", "label": lab("trusted", "internal")}
    assert policy.decide(egress).action is Action.DENY
    assert policy.decide({"kind": "egress", "label": lab()}).action is Action.ALLOW


def test_redact_rule_with_span_patterns() -> None:
    policy = make(
        r"""sinks:
  - id: mask-ssn
    kind: response
    args:
      content: {matches: "re:.*\\d{3}-\\d{2}-\\d{4}.*"}
    action: redact
    redact: {patterns: ["\\d{3}-\\d{2}-\\d{4}"]}
"""
    )
    event = response("someone", lab())
    event["arguments"]["content"]["value"] = "SSN 123-45-6789 ok"
    decision = policy.decide(event)
    assert decision.action is Action.REDACT
    out = decision.redact_arguments({"content": "SSN 123-45-6789 ok"})
    assert out == {"content": "SSN [REDACTED] ok"}


# ---- declassify / endorse --------------------------------------------------------------------


TRANSFORMS = """declassify:
  - id: pii-for-hr
    recipient: hr-agent
    when: {categories_any: [pii]}
    remove_categories: [pii]
    to_confidentiality: internal
endorse:
  - id: sanitizer
    kind: tool_result
    tool: "sanitize_*"
    to_integrity: trusted
"""


def test_declassify_only_through_rules() -> None:
    label = make().lattice.parse(lab("trusted", "confidential", categories=["pii"]))
    none = make()  # no rules: nothing is lowered, nothing is recorded
    assert none.declassify(label, FlowContext(recipient="hr-agent")) == (label, None)
    policy = make(TRANSFORMS)
    lowered, prov = policy.declassify(label, FlowContext(recipient="hr-agent"))
    assert lowered.categories == frozenset() and lowered.confidentiality.name == "internal"
    assert prov is not None and prov.origin is LabelOrigin.DECLASSIFY and prov.rule == "pii-for-hr"
    same, none_prov = policy.declassify(label, FlowContext(recipient="intern-1"))
    assert same == label and none_prov is None


def test_declassify_is_applied_and_audited_in_decisions() -> None:
    policy = make(TRANSFORMS.replace("categories: [pii]}}", "x"))
    pii = lab("trusted", "confidential", categories=["pii"])
    decision = policy.decide(response("hr-agent", pii))
    assert decision.action is Action.ALLOW
    assert {p.rule for p in decision.transforms} == {"pii-for-hr"}
    assert [p.ref for p in decision.transforms] == ["context", "argument:content"]
    assert make().decide(response("someone", pii)).transforms == []


def test_endorse_only_through_rules() -> None:
    ctx = SourceContext(kind="tool_result", tool="sanitize_html", vouched=True)
    assert make().label_source(ctx).label.integrity.name == "untrusted"
    decision = make(TRANSFORMS).label_source(ctx)
    assert decision.label.integrity.name == "trusted"
    assert decision.label.sources == frozenset({"tool:sanitize_html"})  # provenance kept
    assert [p.origin for p in decision.provenance] == [LabelOrigin.DEFAULT, LabelOrigin.ENDORSE]
    other = make(TRANSFORMS).label_source(SourceContext(kind="tool_result", tool="fetch"))
    assert other.label.integrity.name == "untrusted"


def test_a_tool_name_nobody_vouched_for_cannot_raise_integrity_or_lower_confidentiality() -> None:
    """A client's claim (a tool message's name, an annotation's source or URL) may make a
    label stricter, never looser: no endorse rule fires on it, no source rule lowers by it."""
    claimed = make(TRANSFORMS).label_source(SourceContext(kind="tool_result", tool="sanitize_x"))
    assert claimed.label.integrity.name == "untrusted"
    assert "not vouched for" in claimed.provenance[-1].detail
    web = "defaults: {labels: {document: {confidentiality: internal}}}\nsources:\n"
    web += "  - {id: web, url: 'https://*', label: {confidentiality: public}}\n"
    policy = make(web)
    doc = SourceContext(kind="document", url="https://example.com/x")
    assert policy.label_source(doc).label.confidentiality.name != "public"
    vouched = doc.model_copy(update={"vouched": True})
    assert policy.label_source(vouched).label.confidentiality.name == "public"


def test_annotations_raise_freely_but_lower_only_with_right() -> None:
    key_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
    text = BASE.replace(
        "agents:\n", f"agents:\n  boss: {{may_lower: true, key_sha256: {key_hash}}}\n"
    )
    policy = Policy.from_yaml_text(text, "t.yaml")
    lat = policy.lattice
    low, high = lat.label("public", "untrusted", sources=["web:x"]), lat.label("internal")
    raised = policy.annotate("anyone", low, high).label
    assert raised.confidentiality.name == "internal" and raised.integrity.name == "untrusted"
    trusted = lat.label("public", "trusted")
    assert policy.annotate("anyone", low, trusted).label == low
    assert policy.annotate("boss", low, trusted, key="wrong").label == low
    ok = policy.annotate("boss", low, trusted, key="test").label
    assert ok.integrity.name == "trusted" and ok.sources == frozenset({"web:x"})


# ---- source rules -----------------------------------------------------------------------------


SOURCES = """sources:
  - id: web
    url: ["https://*", "http://*"]
    label: {integrity: untrusted, confidentiality: public}
  - id: corp-wiki
    kind: document
    url: "re:https://wiki\\\\.corp\\\\.example/.*"
    label: {integrity: trusted, confidentiality: internal}
  - id: hr-db
    tool: "hr_*"
    label: {confidentiality: confidential, categories: [pii], integrity: trusted}
    stop: true
  - id: never-reached-for-hr
    tool: "hr_lookup"
    label: {confidentiality: public}
  - id: peers
    kind: agent_message
    source: "re:peer-\\\\d+"
    label: {sources: [peer]}
"""


def test_source_rules_by_tool_url_agent_glob_and_regex() -> None:
    policy = make(SOURCES)
    web = policy.label_source(SourceContext(kind="document", url="https://evil.example/x"))
    assert web.label.integrity.name == "untrusted" and "web:evil.example" in web.label.sources
    assert [p.rule for p in web.provenance] == ["web"]
    # both rules match: the join keeps the least trusted and the most confidential
    wiki = policy.label_source(SourceContext(kind="document", url="https://wiki.corp.example/p"))
    assert [p.rule for p in wiki.provenance] == ["web", "corp-wiki"]
    assert wiki.label.integrity.name == "untrusted"
    assert wiki.label.confidentiality.name == "internal"
    hr_lookup = SourceContext(kind="tool_result", tool="hr_lookup", vouched=True)
    hr = policy.label_source(hr_lookup)
    assert [p.rule for p in hr.provenance] == ["hr-db"]  # stop: later rules not consulted
    assert hr.label.categories == frozenset({"pii"}) and hr.label.integrity.name == "trusted"
    # the same tool name as the client's claim: stricter only (confidential, pii, untrusted)
    claimed = policy.label_source(hr_lookup.model_copy(update={"vouched": False}))
    assert claimed.label.categories == frozenset({"pii"})
    assert claimed.label.integrity.name == "untrusted"
    assert claimed.label.confidentiality.name == "confidential"
    # an agent message's author is its source; the reader (agent) is not where it came from
    peer = policy.label_source(
        SourceContext(kind="agent_message", source="peer-12", agent="reader-1")
    )
    assert peer.label.sources == frozenset({"peer", "agent:peer-12"})
    assert peer.label.integrity.name == "untrusted"  # the kind's default, refined by the rule
    unnamed = policy.label_source(SourceContext(kind="agent_message", agent="reader-1"))
    assert unnamed.label.sources == frozenset({"agent:unnamed"})
    other = policy.label_source(SourceContext(kind="agent_message", source="peer-x"))
    assert other.provenance[0].origin is LabelOrigin.DEFAULT


def test_source_defaults_are_secure() -> None:
    policy = make()
    user = policy.label_source(SourceContext(kind="message", role="user"))
    assert user.label.integrity.name == "trusted" and user.label.sources == frozenset({"role:user"})
    for kind in ("tool_result", "document", "agent_message"):
        got = policy.label_source(SourceContext(kind=kind, tool="t", agent="a"))
        assert got.label.integrity.name == "untrusted", kind


# ---- failing closed ---------------------------------------------------------------------------


def test_fail_closed_on_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = make("""sinks:
  - id: allow-lookup
    tool: lookup
    when: {integrity_at_least: untrusted}
    action: allow
""")
    assert policy.decide(call("lookup", q=("a", lab()))).action is Action.ALLOW

    def boom(*_: Any) -> tuple[bool, str]:
        raise RuntimeError("condition exploded")

    monkeypatch.setitem(conditions_mod._CHECKS, "integrity_at_least", boom)
    decision = policy.decide(call("lookup", q=("a", lab())))
    assert decision.action is Action.DENY
    assert decision.rule == "engine:fail-closed"
    assert "RuntimeError: condition exploded" in decision.reason


def test_fail_closed_on_bad_event_labels_and_malformed_events() -> None:
    policy = make()
    bad_level = call("lookup", q=("a", {"confidentiality": "ultra"}))
    assert policy.decide(bad_level).action is Action.DENY
    assert policy.decide({"kind": "teleport"}).action is Action.DENY


def test_label_source_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = make(SOURCES)
    monkeypatch.setattr("labelgate.guard.policy.sources.auto_sources", lambda ctx: 1 / 0)
    got = policy.label_source(SourceContext(kind="message", role="user"))
    assert got.label.confidentiality.name == "confidential"
    assert got.label.integrity.name == "untrusted"


# ---- templates and events ---------------------------------------------------------------------


def test_templates_never_crash() -> None:
    values = {"tool": "send_email", "arg": "to"}
    assert render("{tool}.{arg} from {sources}", values) == "send_email.to from {sources}"
    assert render("unbalanced {", values) == "unbalanced {"
    assert render("{tool.__class__}", values) == "{tool.__class__}"


def test_sink_event_from_label_objects() -> None:
    policy = make()
    lat = policy.lattice
    event = SinkEvent.from_labels(
        "tool_call",
        lat.label(integrity="trusted"),
        {"to": ("x@y", lat.label(integrity="untrusted", sources=["web:y"]))},
        tool="send_email",
        agent="a",
    )
    assert policy.decide(event).action is Action.DENY


# ---- the shipped packs and example events ----------------------------------------------------

CASES = [
    ("default.yaml", "injected-email.json", "deny", "baseline:untrusted-side-effect"),
    ("default.yaml", "trusted-email.json", "allow", None),
    ("rag-confidentiality.yaml", "hr-answer-to-intern.json", "redact", "interns-redacted"),
    ("rag-confidentiality.yaml", "hr-answer-to-hr.json", "log", "log-confidential-answers"),
    (
        "multi-agent-quarantine.yaml",
        "quarantined-agent-spreads.json",
        "deny",
        "quarantine-talks-to-supervisor-only",
    ),
    ("multi-agent-quarantine.yaml", "memory-write-untrusted.json", "log", "memory-keeps-labels"),
]


@pytest.mark.parametrize(("pack", "event", "action", "rule"), CASES)
def test_packs_on_example_events(pack: str, event: str, action: str, rule: str | None) -> None:
    policy = load_policy(ROOT / "policies" / pack)
    decision = policy.decide(json.loads((EVENTS / event).read_text()))
    assert (decision.action.value, decision.rule) == (action, rule)
    runner = CliRunner()
    out = runner.invoke(policy_cli, ["explain", str(ROOT / "policies" / pack), str(EVENTS / event)])
    assert out.exit_code == 0, out.output
    assert action.upper() in out.output and (rule or "no rule") in out.output
    as_json = runner.invoke(
        policy_cli, ["explain", "--json", str(ROOT / "policies" / pack), str(EVENTS / event)]
    )
    data = json.loads(as_json.output)
    assert data["action"] == action and data["chain"]


def test_explain_reports_bad_inputs(tmp_path: Path) -> None:
    bad_event = tmp_path / "e.json"
    bad_event.write_text('{"kind": "tool_call",\n "tool": }')
    pack = str(ROOT / "policies" / "default.yaml")
    result = CliRunner().invoke(policy_cli, ["explain", pack, str(bad_event)])
    assert result.exit_code == 1 and f"{bad_event}:2: invalid JSON" in result.output
    bad_event.write_text('{"kind": "teleport"}')
    result = CliRunner().invoke(policy_cli, ["explain", pack, str(bad_event)])
    assert result.exit_code == 1 and "kind" in result.output


def test_quarantine_pack_semantics() -> None:
    policy = load_policy(ROOT / "policies" / "multi-agent-quarantine.yaml")
    claim = lab("untrusted", sources=["agent:carol"])
    handoff = response("bob", claim) | {"agent": "alice"}
    assert policy.decide(handoff).action is Action.ASK
    to_self = response("alice", claim) | {"agent": "alice"}
    assert policy.decide(to_self).action is Action.ALLOW
    to_supervisor = response("supervisor", claim) | {"agent": "alice"}
    assert policy.decide(to_supervisor).action is Action.ALLOW
    act = call("post_message", text=("hi", lab())) | {"agent": "quarantine-bob"}
    assert policy.decide(act).rule == "quarantine-cannot-act"
    fact_check = SourceContext(kind="tool_result", tool="fact_check_claim", vouched=True)
    assert policy.label_source(fact_check).label.integrity.name == "reviewed"
    claimed = fact_check.model_copy(update={"vouched": False})  # a tool message named so
    assert policy.label_source(claimed).label.integrity.name == "untrusted"
