"""Policies: the YAML language (sources, sinks, agents, tools, declassify, endorse) and the
engine that labels inputs and decides at sinks. See docs/policies.md.

Names are loaded lazily (PEP 562) so that ``guard.policy.cli`` can be imported for
``labelgate --help`` without pulling in pydantic models and the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PolicyError": "guard.policy.errors",
    "ArgumentEvent": "guard.policy.events",
    "Decision": "guard.policy.events",
    "FlowContext": "guard.policy.events",
    "LabelDecision": "guard.policy.events",
    "RedactionTarget": "guard.policy.events",
    "RuleTrace": "guard.policy.events",
    "SinkEvent": "guard.policy.events",
    "SinkFlow": "guard.policy.events",
    "SourceContext": "guard.policy.events",
    "redact_value": "guard.policy.events",
    "Policy": "guard.policy.model",
    "load_policy": "guard.policy.model",
    "Action": "guard.policy.spec",
    "Effect": "guard.policy.spec",
    "SinkKind": "guard.policy.spec",
    "SourceKind": "guard.policy.spec",
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
    from guard.policy.errors import PolicyError
    from guard.policy.events import (
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
    from guard.policy.model import Policy, load_policy
    from guard.policy.spec import Action, Effect, SinkKind, SourceKind


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.policy' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
