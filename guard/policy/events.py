"""What the engine is asked about (contexts, sink events) and what it answers (decisions)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from labelgate.guard.ids import new_id
from labelgate.guard.items import LabelReason
from labelgate.guard.labels import Label, LabelSpec, Lattice
from labelgate.guard.policy.spec import Action, Effect, SinkKind, SourceKind

REDACTED = "[REDACTED]"
CONTEXT = "(context)"  # ``SinkFlow.origins`` key of the call as a whole


class SourceContext(BaseModel):
    """Where an input came from, for source rules."""

    model_config = ConfigDict(extra="forbid")

    kind: SourceKind
    tool: str | None = None
    source: str | None = Field(
        default=None, description="Retrieval source name; an agent message's author."
    )
    url: str | None = None
    agent: str | None = Field(default=None, description="The agent about to read it.")
    role: str | None = None
    vouched: bool = Field(
        default=False,
        description=(
            "Whether ``tool``, ``source`` and ``url`` are facts the proxy can trust (a key's "
            "may_raise, a signed tool result) rather than the client's claim. A claim can only "
            "make the label stricter: rules matched by it never lower it."
        ),
    )

    @property
    def claims(self) -> bool:
        """Whether the context names a tool, source or URL nobody vouched for."""
        return not self.vouched and any((self.tool, self.source, self.url))


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
    provenance: list[LabelReason] = field(default_factory=list)


class ArgumentEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = None
    # Required: an argument with no label must not be read as public/trusted (fail closed).
    label: LabelSpec
    _parsed: Label | None = PrivateAttr(default=None)  # the Label it was built from, if any


class SinkEvent(BaseModel):
    """A flow about to leave a component: a tool call, a response, or egress.

    Labels are ``LabelSpec`` dicts (level names) and are required: an event without the
    labels its caller computed is malformed and denied, never read as public/trusted.
    """

    model_config = ConfigDict(extra="forbid")

    kind: SinkKind
    agent: str | None = Field(
        default=None, description="The calling agent (for a prompt item: the agent reading it)."
    )
    recipient: str | None = Field(
        default=None, description="The agent a response is handed to (default: the caller)."
    )
    tool: str | None = None
    effect: Effect | None = Field(
        default=None, description="Declared by the caller; the stricter of this and the policy."
    )
    label: LabelSpec = Field(description="The call context label.")
    arguments: dict[str, ArgumentEvent] = Field(default_factory=dict)
    _parsed: Label | None = PrivateAttr(default=None)  # the Label it was built from, if any

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
        """Build an event from :class:`Label` objects rather than name dicts.

        The Labels ride along, so the engine need not parse back the names it was given."""
        args: dict[str, ArgumentEvent] = {}
        for name, (value, lab) in (arguments or {}).items():
            args[name] = ArgumentEvent(value=value, label=_spec(lab))
            args[name]._parsed = lab
        event = cls(kind=SinkKind(kind), label=_spec(label), arguments=args, **fields)
        event._parsed = label
        return event

    def flow(self, lattice: Lattice) -> SinkFlow:
        """The event as the engine reads it, its labels parsed in ``lattice``."""
        label = parsed_label(lattice, self)
        arguments = {
            name: (arg.value, parsed_label(lattice, arg)) for name, arg in self.arguments.items()
        }
        return SinkFlow(
            kind=self.kind,
            label=label,
            arguments=arguments,
            agent=self.agent,
            recipient=self.recipient,
            tool=self.tool,
            effect=self.effect,
        )


@dataclass(frozen=True, slots=True)
class SinkFlow:
    """A sink event as the engine reads it: the same fields as :class:`SinkEvent`, with
    :class:`Label` objects (an argument is ``(value, label)``).

    ``SinkEvent`` is the form validated at the edges (JSON, the CLI); the guard builds this
    one from values it made itself, so a decision costs no validation of them. Labels of
    another lattice are parsed again by their names (``in_lattice``), as for an event.
    """

    kind: SinkKind
    label: Label
    arguments: Mapping[str, tuple[Any, Label]] = field(default_factory=dict)
    agent: str | None = None
    recipient: str | None = None
    tool: str | None = None
    effect: Effect | None = None
    # The labels of the inputs each argument came from (``CONTEXT``: the inputs that could
    # have steered the call), when the caller traced them: reasons then name only those
    # inputs (the untrusted sources of *this* value), not every source of the label.
    origins: Mapping[str, tuple[Label, ...]] = field(default_factory=dict)

    @property
    def effective_recipient(self) -> str | None:
        if self.recipient is not None:
            return self.recipient
        return self.agent if self.kind is SinkKind.RESPONSE else None


def _spec(label: Label) -> LabelSpec:
    # A Label is valid by construction and its dict is canonical (sorted): nothing to check.
    return LabelSpec.model_construct(**label.to_dict())


def in_lattice(lattice: Lattice, label: Label) -> Label:
    """``label`` when it belongs to ``lattice`` (same level objects), else parsed from its
    names (a label of another lattice, or one with unknown names: ValueError)."""
    return label if _belongs(lattice, label) else lattice.parse(label.to_dict())


def _belongs(lattice: Lattice, label: Label) -> bool:
    return (
        lattice.confidentiality_level(label.confidentiality.name) is label.confidentiality
        and lattice.integrity_level(label.integrity.name) is label.integrity
    )


def parsed_label(lattice: Lattice, event: SinkEvent | ArgumentEvent) -> Label:
    """The event's label in ``lattice``: the Label it was built from when it belongs to that
    lattice (same level objects), else parsed from its names."""
    label = event._parsed
    if label is not None and _belongs(lattice, label):
        return label
    return lattice.parse(event.label)


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
    id: str = Field(default_factory=new_id)
    action: Action
    reason: str
    rule: str | None = Field(default=None, description="The id of the deciding rule.")
    chain: list[RuleTrace] = Field(default_factory=list)
    redactions: list[RedactionTarget] = Field(default_factory=list)
    transforms: list[LabelReason] = Field(
        default_factory=list, description="Declassifications and endorsements applied (audit)."
    )
    effect: Effect | None = None
    notice: str | None = Field(
        default=None, description="prompt sink: text shown before the item when it passes."
    )

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
