"""Sink decisions: the file's sink rules, then the built-in baseline, deny-overrides.

Every sink rule whose target (kind, tool, effect, agent, recipient) fits the event is
evaluated and traced. Among the rules that match, the strictest action wins
(deny > ask > redact > log > allow). The baseline rules run after the file's rules and
count like rules, except that a matching non-deny file rule with ``override_baseline``
(the default) suppresses them: that is how a policy allows something the baseline forbids.
Any exception gives a deny (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from labelgate.guard.ids import new_id
from labelgate.guard.items import LabelReason
from labelgate.guard.labels import Label, Level, label_key
from labelgate.guard.policy.conditions import Arg, Env, check_args, check_label
from labelgate.guard.policy.events import (
    CONTEXT,
    Decision,
    FlowContext,
    RedactionTarget,
    RuleTrace,
    SinkEvent,
    SinkFlow,
    in_lattice,
)
from labelgate.guard.policy.memo import DecisionKey, kept, remembered
from labelgate.guard.policy.patterns import as_list, matches_any
from labelgate.guard.policy.spec import EFFECT_ORDER, STRICTNESS, Action, Effect, SinkKind, SinkRule
from labelgate.guard.policy.templates import render
from labelgate.guard.policy.transforms import apply_all

if TYPE_CHECKING:
    from labelgate.guard.policy.model import Policy

FAIL_CLOSED = "engine:fail-closed"
_PASSING = (Action.ALLOW, Action.LOG)


@dataclass(slots=True)
class Facts:
    """The event with labels parsed and declassify/endorse rules applied."""

    event: SinkFlow
    effect: Effect | None
    recipient: str | None
    label: Label
    args: dict[str, Arg]
    env: Env
    transforms: list[LabelReason] = field(default_factory=list)

    @property
    def joined(self) -> Label:
        result = self.label
        for arg in self.args.values():
            result = result | arg.label
        return result


@dataclass(slots=True)
class Outcome:
    rule: str
    action: Action
    reason: str
    overrides_baseline: bool = False
    redactions: list[RedactionTarget] = field(default_factory=list)
    notice: str | None = None


def effect_of(policy: Policy, event: SinkEvent | SinkFlow) -> Effect | None:
    """The stricter of the policy's declaration and the event's; unknown tools: external."""
    if event.kind is SinkKind.EGRESS:
        return Effect.EXTERNAL
    if event.kind is not SinkKind.TOOL_CALL:
        return event.effect
    declared = policy.tool_effect(event.tool)
    if event.effect is None:
        return declared
    return max(declared, event.effect, key=EFFECT_ORDER.__getitem__)


def _facts(policy: Policy, event: SinkEvent | SinkFlow) -> Facts:
    lattice = policy.lattice
    flow = event.flow(lattice) if isinstance(event, SinkEvent) else event
    label, label_trail = _transformed(policy, in_lattice(lattice, flow.label), flow)
    trail = [replace(p, ref="context") for p in label_trail]  # say which label was changed
    args: dict[str, Arg] = {}
    for name, (value, arg_label) in flow.arguments.items():
        arg_label, arg_trail = _transformed(policy, in_lattice(lattice, arg_label), flow)
        args[name] = Arg(name, value, arg_label)
        trail += [replace(p, ref=f"argument:{name}") for p in arg_trail]
    recipient = flow.effective_recipient
    env = policy.env_for(flow.agent, recipient)
    return Facts(flow, effect_of(policy, flow), recipient, label, args, env, trail)


def _transformed(
    policy: Policy, label: Label, flow: SinkFlow
) -> tuple[Label, tuple[LabelReason, ...]]:
    """The declassify/endorse rules applied to a label on its way to the flow's sink.

    Remembered per policy: the answer depends only on the label and the context the rules
    see (kind, tool, agent, recipient), and the same few meet again on every request.
    """
    recipient = flow.effective_recipient
    key = (label_key(label), flow.kind.value, flow.tool, flow.agent, recipient)

    def compute() -> tuple[Label, tuple[LabelReason, ...]]:
        ctx = FlowContext(
            kind=flow.kind.value, tool=flow.tool, agent=flow.agent, recipient=recipient
        )
        new, trail = apply_all(policy, label, ctx)
        return new, tuple(trail)

    return remembered(policy._memo.transforms, key, compute)


def _values(facts: Facts, rule: str, action: Action, arg: Arg | None, why: str) -> dict[str, Any]:
    # no single argument to blame: describe everything that flows into the call
    label = arg.label if arg is not None else facts.joined
    value = "" if arg is None else str(arg.value)
    return {
        "action": action.value,
        "rule": rule,
        "why": why,
        "kind": facts.event.kind.value,
        "tool": facts.event.tool or facts.event.kind.value,
        "arg": arg.name if arg is not None else "(context)",
        "value": value if len(value) <= 80 else value[:77] + "...",
        "label": label.short(),
        "sources": ", ".join(sorted(label.sources)) or "(no recorded source)",
        "integrity": label.integrity.name,
        "confidentiality": label.confidentiality.name,
        "categories": ", ".join(sorted(label.categories)) or "(none)",
        "agent": facts.event.agent or "(unknown agent)",
        "recipient": facts.recipient or "(none)",
        "effect": facts.effect.value if facts.effect else "(none)",
    }


def _reason(template: str, values: dict[str, Any]) -> str:
    return f"{values['action']}: {render(template, values)}"


# ---- file rules -------------------------------------------------------------------------


def _for_kind(rule: SinkRule, kind: SinkKind) -> bool:
    if kind is SinkKind.PROMPT:
        # Only rules that name the prompt sink apply there: a rule written for "any sink"
        # before it existed must not start withholding what agents read.
        return rule.targets_prompt()
    if rule.kind is None:
        return True
    kinds = rule.kind if isinstance(rule.kind, list) else [rule.kind]
    return kind in kinds


def _rules_for(policy: Policy, kind: SinkKind) -> tuple[SinkRule, ...]:
    """The file's sink rules for a kind of sink, in file order (remembered per policy)."""
    return remembered(
        policy._memo.sink_rules,
        kind,
        lambda: tuple(rule for rule in policy.sinks if _for_kind(rule, kind)),
    )


def _targets(rule: SinkRule, facts: Facts) -> bool:
    """Does a rule for the event's kind of sink target it (effect, handoff, names)?"""
    if rule.effect is not None:
        effects = rule.effect if isinstance(rule.effect, list) else [rule.effect]
        if facts.effect not in effects:
            return False
    if rule.handoff is not None:
        handoff = facts.recipient is not None and facts.recipient != facts.event.agent
        if handoff != rule.handoff:
            return False
    selectors = (
        (rule.tool, facts.event.tool),
        (rule.agent, facts.event.agent),
        (rule.recipient, facts.recipient),
    )
    return all(p is None or matches_any(as_list(p), v) for p, v in selectors)


def _match(rule: SinkRule, facts: Facts) -> tuple[bool, str, Arg | None]:
    whys: list[str] = []
    if rule.when is not None:
        ok, why = check_label(rule.when, facts.label, facts.env)
        if not ok:
            return False, why, None
        whys.append(why)
    culprit: Arg | None = None
    if rule.args:
        ok, why, culprit = check_args(rule.args, facts.args, facts.env)
        if not ok:
            return False, why, None
        whys.append(why)
    return True, "; ".join(whys) or "the rule's target matches", culprit


def _rule_outcome(rule: SinkRule, facts: Facts, culprit: Arg | None, why: str) -> Outcome:
    values = _values(facts, rule.id, rule.action, culprit, why)
    template = rule.reason or "rule {rule} matched: {why}"
    redactions: list[RedactionTarget] = []
    if rule.action is Action.REDACT:
        spec = rule.redact
        names: list[str | None] = list(spec.args) if spec and spec.args else []
        if not names:
            names = [culprit.name if culprit is not None else None]
        patterns = list(spec.patterns) if spec else []
        redactions = [RedactionTarget(argument=n, patterns=patterns, rule=rule.id) for n in names]
    return Outcome(
        rule.id,
        rule.action,
        _reason(template, values),
        overrides_baseline=rule.override_baseline and rule.action is not Action.DENY,
        redactions=redactions,
        notice=render(rule.notice, values) if rule.notice is not None else None,
    )


# ---- baseline ----------------------------------------------------------------------------

Baseline = Callable[["Policy", Facts], tuple[bool, str, Outcome | None] | None]


def _untrusted_side_effect(policy: Policy, facts: Facts) -> tuple[bool, str, Outcome | None] | None:
    rule = "baseline:untrusted-side-effect"
    if facts.event.kind is not SinkKind.TOOL_CALL or facts.effect is Effect.READ:
        return None
    need = policy.required_integrity
    culprit = next((a for a in facts.args.values() if a.label.integrity < need), None)
    if culprit is None and facts.label.integrity >= need:
        return False, f"the call and all its arguments have integrity {need} or more", None
    template = "{tool}.{arg} is derived from {integrity} source {sources}"
    return _integrity_denial(facts, rule, culprit, need, template)


def _integrity_denial(
    facts: Facts, rule: str, culprit: Arg | None, need: Level, template: str
) -> tuple[bool, str, Outcome]:
    """A deny because ``culprit`` (or the call) is below ``need``, naming its sources."""
    values = _values(facts, rule, Action.DENY, culprit, "")
    culprits = _culprit_sources(facts, culprit, need)
    if culprits:
        values["sources"] = ", ".join(culprits)
    why = render(template, values)
    values["why"] = why
    return True, why, Outcome(rule, Action.DENY, _reason(template, values))


def _culprit_sources(facts: Facts, culprit: Arg | None, need: Level) -> list[str]:
    """The sources of the inputs below ``need`` that the argument (or the call) came from,
    when the caller traced them (``SinkFlow.origins``): a reason names the culprits, not
    every source of a label that also holds the system prompt and the user's words."""
    origins = facts.event.origins.get(culprit.name if culprit is not None else CONTEXT, ())
    found = sorted({s for label in origins if label.integrity < need for s in label.sources})
    # A chat role (``role:user``) says least about where a text came from: named only when
    # nothing more specific is known (an untrusted input relayed with a joined label has both).
    specific = [s for s in found if not s.startswith("role:")]
    return specific or found


def _clearance_outcome(
    policy: Policy, facts: Facts, rule: str, check: Callable[[Label], tuple[bool, str]], who: str
) -> tuple[bool, str, Outcome | None]:
    checked = [(a, *check(a.label)) for a in facts.args.values()]
    bad = [(a, why) for a, ok, why in checked if not ok]
    context_ok, context_why = check(facts.label)
    if not bad and context_ok:
        return False, f"everything is readable by {who}", None
    action = Action(policy.defaults.on_clearance_violation)
    culprit, why = bad[0] if bad else (None, context_why)
    values = _values(facts, rule, action, culprit, why)
    template = "{tool}.{arg} carries {label}, which " + who + " may not read: {why}"
    # blame the unreadable parts when we know them; otherwise the whole content goes
    targets: list[str | None] = [a.name for a, _ in bad] if bad else [None]
    redactions = [RedactionTarget(argument=n, rule=rule) for n in targets]
    return True, why, Outcome(rule, action, _reason(template, values), redactions=redactions)


def _recipient_clearance(policy: Policy, facts: Facts) -> tuple[bool, str, Outcome | None] | None:
    check = facts.env.clearances.get("recipient_clearance")
    if check is None:
        return None
    who = f"recipient {facts.recipient}"
    return _clearance_outcome(policy, facts, "baseline:recipient-clearance", check, who)


def _external_clearance(policy: Policy, facts: Facts) -> tuple[bool, str, Outcome | None] | None:
    if facts.effect is not Effect.EXTERNAL:
        return None
    check = facts.env.clearances["external_clearance"]
    assert check is not None
    return _clearance_outcome(policy, facts, "baseline:external-clearance", check, "the outside")


def _outward_argument(policy: Policy, facts: Facts) -> tuple[bool, str, Outcome | None] | None:
    """Arguments that reach outside (a URL, a query), on every tool, read-only or not: the
    place must not be chosen by untrusted data, and what goes there must be cleared for it."""
    if facts.event.kind is not SinkKind.TOOL_CALL:
        return None
    tool = facts.event.tool
    outward = [a for a in facts.args.values() if policy.is_outward(tool, a.name)]
    if not outward:
        return None
    rule = "baseline:outward-argument"
    need = policy.required_integrity
    culprit = next((a for a in outward if a.label.integrity < need), None)
    if culprit is not None:
        template = "{tool}.{arg} reaches outside and is derived from {integrity} source {sources}"
        return _integrity_denial(facts, rule, culprit, need, template)
    check = facts.env.clearances["external_clearance"]
    assert check is not None
    bad = [(a, why) for a in outward for ok, why in [check(a.label)] if not ok]
    if not bad:
        return False, "the arguments that reach outside are trusted and cleared for it", None
    action = Action(policy.defaults.on_clearance_violation)
    arg, why = bad[0]
    values = _values(facts, rule, action, arg, why)
    template = "{tool}.{arg} reaches outside carrying {label}, which the outside may not read"
    redactions = [RedactionTarget(argument=a.name, rule=rule) for a, _ in bad]
    return True, why, Outcome(rule, action, _reason(template, values), redactions=redactions)


BASELINE: list[Baseline] = [
    _untrusted_side_effect,
    _outward_argument,
    _recipient_clearance,
    _external_clearance,
]
BASELINE_IDS = [
    "baseline:untrusted-side-effect",
    "baseline:outward-argument",
    "baseline:recipient-clearance",
    "baseline:external-clearance",
]


# ---- combination ---------------------------------------------------------------------------


def _evaluate(policy: Policy, event: SinkEvent | SinkFlow) -> Decision:
    facts = _facts(policy, event)
    chain: list[RuleTrace] = []
    outcomes: list[Outcome] = []
    for rule in _rules_for(policy, facts.event.kind):
        if not _targets(rule, facts):
            continue
        ok, why, culprit = _match(rule, facts)
        chain.append(
            RuleTrace(
                rule=rule.id,
                section="sinks",
                matched=ok,
                why=why,
                action=rule.action if ok else None,
            )
        )
        if ok:
            outcomes.append(_rule_outcome(rule, facts, culprit, why))
    overridden = next((o.rule for o in outcomes if o.overrides_baseline), None)
    for baseline, rule_id in zip(BASELINE, BASELINE_IDS, strict=True):
        result = baseline(policy, facts)
        if result is None:
            continue
        ok, why, outcome = result
        if ok and overridden is not None:
            why = f"{why} (overridden by rule {overridden})"
            chain.append(RuleTrace(rule=rule_id, section="baseline", matched=True, why=why))
            continue
        chain.append(
            RuleTrace(
                rule=rule_id,
                section="baseline",
                matched=ok,
                why=why,
                action=outcome.action if outcome else None,
            )
        )
        if outcome is not None:
            outcomes.append(outcome)
    return _combine(facts, chain, outcomes)


def _combine(facts: Facts, chain: list[RuleTrace], outcomes: list[Outcome]) -> Decision:
    if not outcomes:
        return Decision(
            action=Action.ALLOW,
            chain=chain,
            transforms=facts.transforms,
            effect=facts.effect,
            reason="allow: no rule matched and the baseline rules hold",
        )
    winner = max(outcomes, key=lambda o: STRICTNESS[o.action])  # first of the strictest
    for trace in chain:
        if trace.rule == winner.rule and trace.matched:
            trace.decisive = True
    redactions = [r for o in outcomes if o.action is Action.REDACT for r in o.redactions]
    # Notices go with an item that passes: every matching passing rule's, in chain order.
    notices = [o.notice for o in outcomes if o.notice] if winner.action in _PASSING else []
    return Decision(
        action=winner.action,
        reason=winner.reason,
        rule=winner.rule,
        chain=chain,
        redactions=redactions if winner.action is Action.REDACT else [],
        transforms=facts.transforms,
        effect=facts.effect,
        notice="".join(notices) or None,
    )


def decide(policy: Policy, event: SinkEvent | SinkFlow) -> Decision:
    key = _decision_key(policy, event) if isinstance(event, SinkFlow) else None
    if key is None:
        return _decide(policy, event)
    # Remembered per policy: agents resend the same flows (same labels, agents, tools) turn
    # after turn. Each caller gets its own copy with a fresh id, since callers set the action
    # and reason of theirs (an approval, a caller's clearance); nothing changes the nested
    # chain, redactions or transforms, which copies share.
    table = policy._memo.decisions
    decision = table.get(key)
    if decision is None:
        decision = _decide(policy, event)
        if decision.rule == FAIL_CLOSED:
            return decision  # a failure is not kept: the next flow is evaluated again
        kept(table, key, decision)
    return decision.model_copy(update={"id": new_id()})


def _decision_key(policy: Policy, flow: SinkFlow) -> DecisionKey | None:
    """What a decision at this sink depends on, or None when it depends on argument values
    (a rule matching them, or naming ``{value}`` in its reason or notice)."""
    if reads_values(policy, flow.kind):
        return None
    args = tuple((name, label_key(label)) for name, (_, label) in flow.arguments.items())
    effect = flow.effect.value if flow.effect is not None else None
    who = (flow.agent, flow.recipient, flow.tool, effect)
    origins = tuple(
        (name, tuple(label_key(label) for label in labels)) for name, labels in flow.origins.items()
    )
    return (flow.kind.value, label_key(flow.label), args, *who, origins)


def reads_values(policy: Policy, kind: SinkKind) -> bool:
    def compute() -> bool:
        for rule in _rules_for(policy, kind):
            templates = (rule.reason or "", rule.notice or "")
            if any("value" in t for t in templates):  # over-cautious: any mention of it
                return True
            if any(c.matches or c.not_matches for c in rule.args.values()):
                return True
        return False

    return remembered(policy._memo.reads_values, kind, compute)


def _decide(policy: Policy, event: SinkEvent | SinkFlow) -> Decision:
    try:
        return _evaluate(policy, event)
    except Exception as exc:  # fail closed: an error must never let a flow through
        why = f"internal error while evaluating the policy ({type(exc).__name__}: {exc})"
        trace = RuleTrace(
            rule=FAIL_CLOSED,
            section="engine",
            matched=True,
            why=why,
            action=Action.DENY,
            decisive=True,
        )
        return Decision(action=Action.DENY, reason=f"deny: {why}", rule=FAIL_CLOSED, chain=[trace])
