"""The engine's fast path: the same answers as the validated, uncached one, and never stale."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from labelgate.guard.engine import Guard, InputSpec, ToolCallSpec
from labelgate.guard.items import LLMCall
from labelgate.guard.labels import Label, Lattice, LatticeConfig, Level, label_key
from labelgate.guard.policy import Policy, SinkEvent, SinkFlow, SourceContext, load_policy
from labelgate.guard.policy import memo as memo_module
from labelgate.guard.policy import model as model_module
from labelgate.guard.policy import sinks as sinks_module
from labelgate.guard.policy.spec import Action, Effect, SinkKind
from labelgate.proxy.policy_hook import _params
from labelgate.proxy.schemas import ChatCompletionRequest

ROOT = Path(__file__).resolve().parents[1]

# Declassify and endorse rules that apply at sinks, so the memoised transforms are exercised.
TRANSFORMS = """
version: 1
name: transforms
lattice:
  confidentiality: [public, internal, confidential, secret]
  integrity: [untrusted, reviewed, trusted]
  categories: [pii, finance]
agents:
  alice: {clearance: {confidentiality: confidential, categories: [pii]}}
  "hr-*": {clearance: {confidentiality: secret, categories: [pii, finance], readers: [hr]}}
  "*": {clearance: {confidentiality: internal}}
tools:
  send_email: {effect: external}
sinks:
  - id: log-answers
    kind: response
    when: {any_of: [{integrity_below: trusted}, {categories_any: [pii]}]}
    action: log
    reason: "{recipient} gets {label} ({why})"
    override_baseline: false
  - id: redact-finance
    kind: [tool_call, egress]
    args:
      "*": {when: {categories_any: [finance]}}
    action: redact
    redact: {patterns: ["\\\\d+"]}
declassify:
  - id: pii-for-alice
    recipient: alice
    when: {categories_any: [pii]}
    remove_categories: [pii]
    reason: "pii ({before} -> {after}) for {recipient} via {kind}/{tool} by {rule}"
  - id: internal-to-hr
    recipient: "hr-*"
    to_confidentiality: internal
    add_readers: [hr, alice]
  - id: email-public
    kind: tool_call
    tool: send_email
    when: {confidentiality_at_most: confidential}
    to_confidentiality: public
endorse:
  - id: reviewed-for-tools
    kind: tool_call
    when: {sources_match: "doc:hr*"}
    to_integrity: reviewed
  - id: trusted-answers-to-hr
    kind: response
    agent: "hr-*"
    to_integrity: trusted
    reason: "endorsed for {agent} -> {recipient}"
"""


SHIPPED = sorted(p.name for p in (ROOT / "policies").glob("*.yaml"))


def _policy(name: str) -> Policy:
    if name == "transforms":
        return Policy.from_yaml_text(TRANSFORMS, "transforms.yaml")
    return load_policy(ROOT / "policies" / name)


def _labels(lattice: Lattice) -> list[Label]:
    cats = lattice.config.categories[:2] or []
    found = []
    for conf, integ, readers, categories, sources in itertools.product(
        lattice.config.confidentiality,
        lattice.config.integrity,
        (None, ["alice"], ["hr", "bob"]),
        ([], cats[:1], cats),
        ([], ["web:evil.example"], ["doc:hr/records/1"]),
    ):
        found.append(lattice.label(conf, integ, readers, categories, sources))
    return found


def _answer(decision: Any) -> dict[str, Any]:
    """A decision without its random id."""
    dumped = decision.model_dump(mode="json")
    dumped.pop("id")
    return dumped


def _flows(policy: Policy, seed: int, n: int) -> list[SinkFlow]:
    rng = random.Random(seed)
    # and some labels of another lattice: parsed again by their names (or denied, if unknown)
    labels = _labels(policy.lattice) + _labels(Lattice())[::7]
    agents = [None, "alice", "bob", "hr-agent", "intern", *policy.agents]
    tools = ["send_email", "search_web", "delete_file", "read_file", "unknown", *policy.tools]
    flows = []
    for _ in range(n):
        kind = rng.choice(list(SinkKind))
        args = {
            name: (rng.choice(["x@y.example", "pay 4200", ["a", "b"], 3]), rng.choice(labels))
            for name in rng.sample(["to", "body", "query", "content"], rng.randint(0, 2))
        }
        flows.append(
            SinkFlow(
                kind,
                rng.choice(labels),
                args,
                agent=rng.choice(agents),
                recipient=rng.choice(agents),
                tool=rng.choice(tools) if kind is SinkKind.TOOL_CALL else None,
                effect=rng.choice([None, None, *Effect]),
            )
        )
    return flows


def _uncached(m: pytest.MonkeyPatch) -> None:
    """Every memoised answer computed afresh: the engine as it was before the memo."""
    m.setattr(model_module, "remembered", lambda table, key, compute: compute())
    m.setattr(sinks_module, "remembered", lambda table, key, compute: compute())


@pytest.mark.parametrize("name", [*SHIPPED, "transforms"])
def test_fast_path_decides_like_the_validated_uncached_engine(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _policy(name)
    flows = _flows(policy, seed=len(name), n=400)
    # twice over: the second round is answered from a warm memo
    fast = [_answer(policy.decide(f)) for f in flows + flows]
    with monkeypatch.context() as m:
        _uncached(m)
        events = [
            SinkEvent.from_labels(
                f.kind,
                f.label,
                dict(f.arguments),
                agent=f.agent,
                recipient=f.recipient,
                tool=f.tool,
                effect=f.effect,
            )
            for f in flows
        ]
        slow = [_answer(policy.decide(e.model_dump(mode="json"))) for e in events]
    assert fast == slow + slow
    assert len({a["rule"] for a in fast}) > 3  # not one answer for everything
    if name == "transforms":  # its declassify and endorse rules did apply
        assert sum(bool(a["transforms"]) for a in fast) > 50


def test_guard_reviews_like_the_uncached_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Policy.from_yaml_text(TRANSFORMS, "transforms.yaml")
    guard = Guard(policy)
    specs = [
        InputSpec(text="the brief", role="system"),
        InputSpec(text="HR file: pay 4200", kind="document", source="hr/1"),
    ]
    labeled = [guard.label_input(spec, agent="hr-agent") for spec in specs]
    calls = [ToolCallSpec(id="c1", name="send_email", arguments='{"to": "x", "body": "4200"}')]
    review = asyncio.run(
        guard.review(LLMCall(labeled), "pay 4200", calls, agent="hr-agent", recipient="alice")
    )
    label = review.label
    (args,) = [
        {
            path: (p.value, label if p.kind == "none" else p.label)
            for path, p in t.provenance.items()
        }
        for t in review.tool_calls
    ]
    with monkeypatch.context() as m:
        _uncached(m)
        events = [
            SinkEvent.from_labels(
                "response",
                label,
                {"content": ("pay 4200", label)},
                agent="hr-agent",
                recipient="alice",
            ),
            SinkEvent.from_labels("tool_call", label, args, agent="hr-agent", tool="send_email"),
        ]
        expected = [_answer(policy.decide(e.model_dump(mode="json"))) for e in events]
    got = [_answer(d) for d in review.decisions]
    # The guard traces where each argument came from (SinkFlow.origins), so its deny reason
    # names only the culprit inputs' sources; an event has no origins and names them all.
    for answer in (*got, *expected):
        answer.pop("reason")
        for trace in answer["chain"]:
            trace.pop("why")
    assert got == expected
    assert review.decisions[1].reason.endswith("source doc:hr/1")
    assert review.decisions[0].transforms  # declassified for alice on the way


def test_memo_keys_tell_apart_equal_labels_with_other_level_names() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    other = Lattice(LatticeConfig(confidentiality=["low", "mid", "high", "top"]))
    ours, theirs = policy.lattice.label("secret"), other.label("top")
    assert ours == theirs  # Level compares by rank only
    assert label_key(ours) != label_key(theirs)
    for first, second in ((ours, theirs), (theirs, ours)):
        fresh = load_policy(ROOT / "policies" / "default.yaml")
        _, why_first = fresh.readable_by(first, "bob")
        _, why_second = fresh.readable_by(second, "bob")
        assert first.confidentiality.name in why_first
        assert second.confidentiality.name in why_second
        assert first.confidentiality.name not in why_second


def test_a_loaded_policy_is_frozen_and_a_copy_has_its_own_memo() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    with pytest.raises(ValidationError):
        policy.agents = {}  # type: ignore[misc]
    label = policy.lattice.label("confidential")
    assert not policy.readable_by(label, "bob")[0]  # the memo now holds this answer
    cleared = {"*": {"clearance": {"confidentiality": "secret"}}}
    copy = policy.model_copy(update={"agents": Policy.model_validate({"agents": cleared}).agents})
    assert copy.readable_by(label, "bob")[0]  # not the original's remembered answer
    assert not policy.readable_by(label, "bob")[0]
    renamed = LatticeConfig(confidentiality=["low", "mid", "high", "top"])
    relabeled = policy.model_copy(update={"lattice_config": renamed})
    assert relabeled.lattice is not policy.lattice
    assert [lv.name for lv in relabeled.lattice.confidentiality_levels][-1] == "top"


def test_a_policy_in_use_still_pickles() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")

    def flow(p: Policy) -> SinkFlow:
        label = p.lattice.label("secret")
        return SinkFlow(SinkKind.RESPONSE, label, {"content": ("x", label)}, agent="a")

    before = policy.decide(flow(policy))
    loaded = pickle.loads(pickle.dumps(policy))  # its memo (closures included) stays behind
    assert loaded.model_dump() == policy.model_dump()
    assert _answer(loaded.decide(flow(loaded))) == _answer(before)
    assert before.action is Action.DENY


def test_memo_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo_module, "TABLE_SIZE", 8)
    policy = load_policy(ROOT / "policies" / "default.yaml")
    labels = [
        policy.label_source(SourceContext(kind="document", url=f"https://site{i}.example/x"))
        for i in range(30)
    ]
    assert len(policy._memo.sources) <= 8
    assert (
        labels[3].label
        == policy.label_source(SourceContext(kind="document", url="https://site3.example/x")).label
    )  # recomputed after the table was cleared, the same answer


def test_an_error_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    label = policy.lattice.label(integrity="untrusted")
    flow = SinkFlow(SinkKind.RESPONSE, label, {"content": ("hi", label)}, agent="bob")

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(sinks_module, "apply_all", broken)
        failed = policy.decide(flow)
    assert failed.action is Action.DENY and failed.rule == "engine:fail-closed"
    assert "boom" in failed.reason
    again = policy.decide(flow)  # the failure was not kept
    assert again.action is Action.LOG and again.rule == "flag-untrusted-answers"


def test_levels_compare_by_rank_and_max_keeps_the_first_of_equals() -> None:
    a, b, c = Level(1, "a"), Level(1, "b"), Level(2, "c")
    assert a <= b and a >= b and not a < b and not a > b and a == b
    assert c > a and c >= a and a < c and a <= c
    assert max(a, b) is a and min(a, b) is a and max(a, c) is c and min(c, a) is a


def test_request_params_are_the_ones_the_client_set() -> None:
    messages = [{"role": "user", "content": "x"}]
    for extra in ({}, {"max_tokens": 5, "stop": ["a"], "temperature": 0.2, "top_p": 1}):
        request = ChatCompletionRequest.model_validate(
            {"model": "m", "messages": messages, **extra}
        )
        dumped = request.model_dump(exclude_unset=True)
        expected = {k: dumped[k] for k in ("max_tokens", "stop", "temperature") if k in dumped}
        params = _params(request)
        assert params == expected
        if "stop" in params:
            params["stop"].append("changed")  # a copy: the request keeps what was sent
            assert request.model_extra is not None and request.model_extra["stop"] == ["a"]


VALUES = """
version: 1
name: values
sinks:
  - id: no-secrets-out
    kind: tool_call
    args:
      body: {matches: "*password*"}
    action: deny
  - id: say-what
    kind: response
    args:
      content: {when: {integrity_below: trusted}}
    action: log
    reason: "logged {value}"
"""


def test_decisions_that_read_values_are_not_shared_between_values() -> None:
    policy = Policy.from_yaml_text(VALUES, "values.yaml")
    label = policy.lattice.label(integrity="untrusted")
    trusted = policy.lattice.label(integrity="trusted")

    def call(body: str) -> Any:
        args = {"body": (body, trusted)}
        return policy.decide(SinkFlow(SinkKind.TOOL_CALL, trusted, args, tool="read_file"))

    assert call("my password is x").action is Action.DENY
    assert call("hello").action is Action.ALLOW
    assert call("my password is y").action is Action.DENY

    def answer(text: str) -> Any:
        return policy.decide(SinkFlow(SinkKind.RESPONSE, label, {"content": (text, label)}))

    assert (answer("first").reason, answer("second").reason) == (
        "log: logged first",
        "log: logged second",
    )


def test_a_remembered_decision_is_a_fresh_copy_each_time() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    label = policy.lattice.label(integrity="untrusted")
    flow = SinkFlow(SinkKind.RESPONSE, label, {"content": ("hi", label)}, agent="bob")
    first = policy.decide(flow)
    first.action, first.reason = Action.DENY, "changed by its caller"  # e.g. an approval
    second = policy.decide(flow)
    assert second.id != first.id
    assert (second.action, second.reason) != (Action.DENY, "changed by its caller")
    assert _answer(second) == _answer(policy.decide(flow))
