"""Declassification and endorsement: the only ways a label is lowered, always by a rule.

Every applied rule yields a :class:`LabelReason` (origin DECLASSIFY or ENDORSE, the rule id and
what changed) that callers must record with the item; a rule that changes nothing yields none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labelgate.guard.items import LabelOrigin, LabelReason
from labelgate.guard.labels import Label
from labelgate.guard.policy.conditions import check_label
from labelgate.guard.policy.events import FlowContext
from labelgate.guard.policy.patterns import as_list, matches_any
from labelgate.guard.policy.spec import DeclassifyRule, EndorseRule
from labelgate.guard.policy.templates import render

if TYPE_CHECKING:
    from labelgate.guard.policy.model import Policy

_SELECTORS = ("kind", "tool", "source", "url", "agent", "recipient")


def _applies(
    policy: Policy, rule: DeclassifyRule | EndorseRule, label: Label, ctx: FlowContext
) -> bool:
    for name in _SELECTORS:
        pats = getattr(rule, name)
        if pats is not None and not matches_any(as_list(pats), getattr(ctx, name)):
            return False
    if rule.when is None:
        return True
    return check_label(rule.when, label, policy.env_for(ctx.agent, ctx.recipient))[0]


def _declassify_one(policy: Policy, rule: DeclassifyRule, label: Label) -> Label:
    lattice = policy.lattice
    conf = label.confidentiality
    if rule.to_confidentiality is not None:
        conf = min(conf, lattice.conf(rule.to_confidentiality))
    readers = label.readers
    if rule.add_readers and readers is not None:
        readers = readers | frozenset(rule.add_readers)
    return Label(
        conf,
        label.integrity,
        readers,
        label.categories - set(rule.remove_categories),
        label.sources,
    )


def _endorse_one(policy: Policy, rule: EndorseRule, label: Label) -> Label:
    integrity = max(label.integrity, policy.lattice.integ(rule.to_integrity))
    return Label(label.confidentiality, integrity, label.readers, label.categories, label.sources)


def _provenance(
    origin: LabelOrigin,
    rule: DeclassifyRule | EndorseRule,
    before: Label,
    after: Label,
    ctx: FlowContext,
) -> LabelReason:
    default = f"{origin.value} by rule {rule.id}: {before.short()} -> {after.short()}"
    context = {k: ("(none)" if v is None else v) for k, v in ctx.model_dump().items()}
    values = {**context, "rule": rule.id, "before": before.short(), "after": after.short()}
    detail = render(rule.reason, values) if rule.reason else default
    return LabelReason(origin=origin, detail=detail, rule=rule.id, ref=ctx.kind)


def apply(
    policy: Policy, origin: LabelOrigin, label: Label, ctx: FlowContext
) -> tuple[Label, list[LabelReason]]:
    """Apply every matching rule of one kind, in file order."""
    rules = policy.declassify_rules if origin is LabelOrigin.DECLASSIFY else policy.endorse_rules
    trail: list[LabelReason] = []
    for rule in rules:
        if not _applies(policy, rule, label, ctx):
            continue
        if isinstance(rule, DeclassifyRule):
            after = _declassify_one(policy, rule, label)
        else:
            after = _endorse_one(policy, rule, label)
        if after != label:
            trail.append(_provenance(origin, rule, label, after, ctx))
            label = after
    return label, trail


def apply_all(policy: Policy, label: Label, ctx: FlowContext) -> tuple[Label, list[LabelReason]]:
    """Endorse, then declassify (endorsement can make data eligible for a declassify rule)."""
    label, endorsed = apply(policy, LabelOrigin.ENDORSE, label, ctx)
    label, declassified = apply(policy, LabelOrigin.DECLASSIFY, label, ctx)
    return label, endorsed + declassified


def merged(trail: list[LabelReason], origin: LabelOrigin) -> LabelReason | None:
    """One provenance for the public single-result API (several rules: joined)."""
    if not trail:
        return None
    if len(trail) == 1:
        return trail[0]
    return LabelReason(
        origin=origin,
        detail="; ".join(p.detail for p in trail),
        rule=",".join(p.rule or "" for p in trail),
        ref=trail[0].ref,
    )
