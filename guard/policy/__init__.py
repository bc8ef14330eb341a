"""Policies: the YAML language (sources, sinks, agents, tools, declassify, endorse) and the
engine that labels inputs and decides at sinks. See docs/policies.md.

Names are loaded lazily (PEP 562) so that ``guard.policy.cli`` can be imported for
``labelgate --help`` without pulling in pydantic models and the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PolicyError": "labelgate.guard.policy.errors",
    "ArgumentEvent": "labelgate.guard.policy.events",
    "Decision": "labelgate.guard.policy.events",
    "FlowContext": "labelgate.guard.policy.events",
    "LabelDecision": "labelgate.guard.policy.events",
    "RedactionTarget": "labelgate.guard.policy.events",
    "RuleTrace": "labelgate.guard.policy.events",
    "SinkEvent": "labelgate.guard.policy.events",
    "SinkFlow": "labelgate.guard.policy.events",
    "SourceContext": "labelgate.guard.policy.events",
    "redact_value": "labelgate.guard.policy.events",
    "Policy": "labelgate.guard.policy.model",
    "load_policy": "labelgate.guard.policy.model",
    "Action": "labelgate.guard.policy.spec",
    "Effect": "labelgate.guard.policy.spec",
    "SinkKind": "labelgate.guard.policy.spec",
    "SourceKind": "labelgate.guard.policy.spec",
}

__all__ = [
    "Action",
    "ArgumentEvent",
    "Decision",
    "Effect",
    "FlowContext",
    "LabelDecision",
    "Policy",
    "PolicyError",
    "RedactionTarget",
    "RuleTrace",
    "SinkEvent",
    "SinkFlow",
    "SinkKind",
    "SourceContext",
    "SourceKind",
    "load_policy",
    "redact_value",
]

if TYPE_CHECKING:
    from labelgate.guard.policy.errors import PolicyError
    from labelgate.guard.policy.events import (
        ArgumentEvent,
        Decision,
        FlowContext,
        LabelDecision,
        RedactionTarget,
        RuleTrace,
        SinkEvent,
        SinkFlow,
        SourceContext,
        redact_value,
    )
    from labelgate.guard.policy.model import Policy, load_policy
    from labelgate.guard.policy.spec import Action, Effect, SinkKind, SourceKind


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'labelgate.guard.policy' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
