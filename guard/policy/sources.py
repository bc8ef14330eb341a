"""Source rules: the label an input gets from where it came from.

All matching rules in file order contribute (a rule with ``stop: true`` ends the search);
each rule's label refines the kind's default label, and the results are joined, so the most
restrictive reading wins and every rule that applied is named in the provenance.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from labelgate.guard.items import LabelOrigin, LabelReason
from labelgate.guard.labels import Label
from labelgate.guard.policy.events import FlowContext, LabelDecision, SourceContext
from labelgate.guard.policy.patterns import as_list, matches_any
from labelgate.guard.policy.spec import LabelTemplate, SourceRule
from labelgate.guard.policy.transforms import apply_all

if TYPE_CHECKING:
    from labelgate.guard.policy.model import Policy

_SELECTORS = ("tool", "source", "url", "agent", "role")


def auto_sources(ctx: SourceContext) -> list[str]:
    """Source tags derived from the context itself: ``tool:``, ``web:``, ``doc:``...

    An agent message's ``source`` is its author (``agent:AUTHOR``; ``agent:unnamed`` when the
    caller did not say): tags name where a text came from, never ``ctx.agent``, the agent
    about to read it."""
    tags: list[str] = []
    if ctx.tool:
        tags.append(f"tool:{ctx.tool}")
    if ctx.url:
        host = urlsplit(ctx.url).hostname
        tags.append(f"web:{host}" if host else f"url:{ctx.url}")
    if ctx.kind.value == "agent_message":
        tags.append(f"agent:{ctx.source or 'unnamed'}")
    elif ctx.source:
        tags.append(f"doc:{ctx.source}")
    if ctx.kind.value == "message" and ctx.role:
        tags.append(f"role:{ctx.role}")
    return tags


def _applies(rule: SourceRule, ctx: SourceContext) -> bool:
    if rule.kind is not None:
        kinds = rule.kind if isinstance(rule.kind, list) else [rule.kind]
        if ctx.kind not in kinds:
            return False
    for name in _SELECTORS:
        pats = getattr(rule, name)
        if pats is not None and not matches_any(as_list(pats), getattr(ctx, name)):
            return False
    return True


def label_source(policy: Policy, ctx: SourceContext) -> LabelDecision:
    """The input's label by the policy's source rules, then its endorse and declassify rules.

    The tool, source and URL of an input are the client's word unless vouched for
    (``SourceContext.vouched``): a rule they select may make the label stricter, never looser.
    So an unvouched claim gets the join of its label with the label the input would have
    without it: naming a tool message ``sanitize_html`` fires no endorse rule, calling a
    document a web page does not make it public.
    """
    decided = _by_rules(policy, ctx)
    if not ctx.claims:
        return decided
    bare = _by_rules(policy, ctx.model_copy(update={"tool": None, "source": None, "url": None}))
    stricter = decided.label | bare.label
    # the claim's source tags are kept (what it claimed is worth recording), not the bare ones
    label = Label(
        stricter.confidentiality,
        stricter.integrity,
        stricter.readers,
        stricter.categories,
        decided.label.sources,
    )
    if label == decided.label:
        return decided
    named = ", ".join(
        f"{k} {v!r}" for k, v in (("tool", ctx.tool), ("source", ctx.source), ("url", ctx.url)) if v
    )
    why = (
        f"{named}: the client's claim, not vouched for; rules it selects may only make the "
        f"label stricter (kept {label.short()}, not {decided.label.short()})"
    )
    return LabelDecision(label, [*decided.provenance, LabelReason(LabelOrigin.DEFAULT, why)])


def _by_rules(policy: Policy, ctx: SourceContext) -> LabelDecision:
    base: LabelTemplate = getattr(policy.defaults.labels, ctx.kind.value)
    matched: list[SourceRule] = []
    for rule in policy.sources:
        if _applies(rule, ctx):
            matched.append(rule)
            if rule.stop:
                break
    tags = auto_sources(ctx)
    if not matched:
        label = policy.lattice.parse(base.to_spec()).with_sources(*tags)
        why = f"no source rule matched; default label for {ctx.kind.value}"
        trail = [LabelReason(LabelOrigin.DEFAULT, why, ref=",".join(tags) or None)]
    else:
        labels = [policy.lattice.parse(r.label.over(base).to_spec()) for r in matched]
        label = policy.lattice.join_all(labels).with_sources(*tags)
        trail = [
            LabelReason(LabelOrigin.SOURCE_RULE, r.description or f"source rule {r.id}", rule=r.id)
            for r in matched
        ]
    label, changes = apply_all(policy, label, FlowContext.of(ctx))
    return LabelDecision(label, trail + changes)


def annotate(
    policy: Policy, agent: str | None, current: Label, asserted: Label, key: str | None = None
) -> LabelDecision:
    """A client's label assertion: raising always works, lowering needs the agent's right.

    Sources are never dropped, even by a trusted lowering: provenance is not a privilege.
    """
    raised = current | asserted
    lowered = asserted.with_sources(*current.sources)
    spec = policy.agent_spec(agent)
    if current.flows_to(lowered):  # a pure raise: no privilege needed
        why = f"annotation by {agent or 'client'} raised the label"
        return LabelDecision(raised, [LabelReason(LabelOrigin.ANNOTATION, why, ref=agent)])
    if spec.may_lower and _key_ok(spec.key_sha256, key):
        why = f"annotation by {agent} lowered the label (may_lower)"
        return LabelDecision(lowered, [LabelReason(LabelOrigin.ANNOTATION, why, ref=agent)])
    why = f"annotation by {agent or 'client'} may not lower the label; kept {current.short()}"
    return LabelDecision(raised, [LabelReason(LabelOrigin.ANNOTATION, why, ref=agent)])


def _key_ok(expected: str | None, key: str | None) -> bool:
    if expected is None:
        return True
    if key is None:
        return False
    digest = hashlib.sha256(key.encode()).hexdigest()
    return hmac.compare_digest(digest, expected)
