"""What the engine is asked about (contexts, sink events) and what it answers (decisions)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guard.items import Provenance
from guard.labels import Label, LabelSpec
from guard.policy.spec import Action, Effect, SinkKind, SourceKind

REDACTED = "[REDACTED]"


class SourceContext(BaseModel):
    """Where an input came from, for source rules."""

    model_config = ConfigDict(extra="forbid")

    kind: SourceKind
    tool: str | None = None
    source: str | None = Field(default=None, description="Retrieval source name.")
    url: str | None = None
    agent: str | None = Field(default=None, description="The agent that sent or received it.")
    role: str | None = None


class FlowContext(BaseModel):
    """Where a label is going, for declassify and endorse rules."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = None
    tool: str | None = None
    source: str | None = None
    url: str | None = None
    agent: str | None = None
    recipient: str | None = None

    @classmethod
    def of(cls, context: SourceContext | SinkEvent | FlowContext | dict[str, Any]) -> FlowContext:
        if isinstance(context, FlowContext):
            return context
        if isinstance(context, dict):
            return cls.model_validate(context)
        if isinstance(context, SourceContext):
            return cls(
                kind=context.kind.value,
                tool=context.tool,
                source=context.source,
                url=context.url,
                agent=context.agent,
            )
        return cls(
            kind=context.kind.value,
            tool=context.tool,
            agent=context.agent,
            recipient=context.effective_recipient,
        )


@dataclass(slots=True)
class LabelDecision:
    """A label and every reason it was given (rules, defaults, declassify/endorse)."""

    label: Label
    provenance: list[Provenance] = field(default_factory=list)


class ArgumentEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = None
    # Required: an argument with no label must not be read as public/trusted (fail closed).
    label: LabelSpec


class SinkEvent(BaseModel):
    """A flow about to leave a component: a tool call, a response, or egress.

    Labels are ``LabelSpec`` dicts (level names) and are required: an event without the
    labels its caller computed is malformed and denied, never read as public/trusted.
    """

    model_config = ConfigDict(extra="forbid")

    kind: SinkKind
    agent: str | None = Field(default=None, description="The calling agent.")
    recipient: str | None = Field(
        default=None, description="The agent a response is handed to (default: the caller)."
    )
    tool: str | None = None
    effect: Effect | None = Field(
        default=None, description="Declared by the caller; the stricter of this and the policy."
    )
    label: LabelSpec = Field(description="The call context label.")
    arguments: dict[str, ArgumentEvent] = Field(default_factory=dict)

    @property
    def effective_recipient(self) -> str | None:
        if self.recipient is not None:
            return self.recipient
        return self.agent if self.kind is SinkKind.RESPONSE else None

    @classmethod
    def from_labels(
        cls,
        kind: SinkKind | str,
        label: Label,
        arguments: dict[str, tuple[Any, Label]] | None = None,
        **fields: Any,
    ) -> SinkEvent:
        """Build an event from :class:`Label` objects rather than name dicts."""
        args = {
            name: ArgumentEvent(value=value, label=LabelSpec.model_validate(lab.to_dict()))
            for name, (value, lab) in (arguments or {}).items()
        }
        return cls(
            kind=SinkKind(kind),
            label=LabelSpec.model_validate(label.to_dict()),
            arguments=args,
            **fields,
        )


class RuleTrace(BaseModel):
    """One rule the engine looked at: did it match, why, and did it decide."""

    rule: str
    section: str  # sinks | baseline | declassify | endorse | engine
    matched: bool
    why: str
    action: Action | None = None
    decisive: bool = False


class RedactionTarget(BaseModel):
    argument: str | None = Field(description="Argument name; null is the whole content.")
    patterns: list[str] = Field(
        default_factory=list, description="Regexes of spans; empty redacts the whole value."
    )
    rule: str


class Decision(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    action: Action
    reason: str
    rule: str | None = Field(default=None, description="The id of the deciding rule.")
    chain: list[RuleTrace] = Field(default_factory=list)
    redactions: list[RedactionTarget] = Field(default_factory=list)
    transforms: list[Provenance] = Field(
        default_factory=list, description="Declassifications and endorsements applied (audit)."
    )
    effect: Effect | None = None

    @property
    def allowed(self) -> bool:
        """May the flow proceed now (possibly after redaction)? ``ask`` waits for a person."""
        return self.action in (Action.ALLOW, Action.LOG, Action.REDACT)

    def redact_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Apply this decision's redactions to argument values (a copy)."""
        out = dict(arguments)
        for target in self.redactions:
            names = list(out) if target.argument is None else [target.argument]
            for name in names:
                if name in out:
                    out[name] = redact_value(out[name], target.patterns)
        return out


def redact_value(value: Any, patterns: list[str]) -> Any:
    """Blank out the spans matching ``patterns`` (or the whole value when there are none)."""
    if isinstance(value, list):
        return [redact_value(v, patterns) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, patterns) for k, v in value.items()}
    if not patterns or not isinstance(value, str):
        return REDACTED
    for pattern in patterns:
        value = re.sub(pattern, REDACTED, value)
    return value
