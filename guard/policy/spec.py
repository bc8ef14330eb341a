"""The policy file's vocabulary as pydantic models (the JSON Schema is generated from these).

Level, integrity and category names are checked against the file's own lattice: the loader
validates ``lattice`` first and passes it as validation context, so a bad name is reported at
its own line and field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from labelgate.guard.labels import LabelSpec, Lattice
from labelgate.guard.policy.patterns import check_pattern


class Action(StrEnum):
    """What happens at a sink, from most permissive to strictest."""

    ALLOW = "allow"
    LOG = "log"  # allow, but flag the decision for the audit trail
    REDACT = "redact"  # allow after removing the redaction targets
    ASK = "ask"  # hold the call until a person approves it
    DENY = "deny"


# deny-overrides: when several rules match, the strictest action wins
STRICTNESS: dict[Action, int] = {a: i for i, a in enumerate(Action)}


class Effect(StrEnum):
    """A tool's side effect class; ``external`` reaches outside the system (email, web...)."""

    READ = "read"
    WRITE = "write"
    EXTERNAL = "external"


EFFECT_ORDER: dict[Effect, int] = {e: i for i, e in enumerate(Effect)}


class SourceKind(StrEnum):
    TOOL_RESULT = "tool_result"
    DOCUMENT = "document"
    MESSAGE = "message"  # a message from the client itself (user, system)
    AGENT_MESSAGE = "agent_message"  # a message handed over by another agent


class SinkKind(StrEnum):
    TOOL_CALL = "tool_call"
    RESPONSE = "response"  # an answer handed to an agent
    EGRESS = "egress"  # text leaving the system
    PROMPT = "prompt"  # an input item about to reach an agent's model (only rules naming it)


def _lattice(info: ValidationInfo) -> Lattice | None:
    ctx = info.context
    return ctx.get("lattice") if isinstance(ctx, dict) else None


def _conf_name(name: str, info: ValidationInfo) -> str:
    lattice = _lattice(info)
    if lattice is not None:
        lattice.conf(name)  # ValueError names the known levels
    return name


def _integ_name(name: str, info: ValidationInfo) -> str:
    lattice = _lattice(info)
    if lattice is not None:
        lattice.integ(name)
    return name


def _category_name(name: str, info: ValidationInfo) -> str:
    lattice = _lattice(info)
    known = lattice.config.categories if lattice is not None else []
    if known and name not in known:
        raise ValueError(f"unknown category {name!r} (known: {', '.join(known)})")
    return name


ConfName = Annotated[str, AfterValidator(_conf_name)]
IntegName = Annotated[str, AfterValidator(_integ_name)]
CategoryName = Annotated[str, AfterValidator(_category_name)]
Pattern = Annotated[str, AfterValidator(check_pattern)]
Patterns = Pattern | list[Pattern]
"""A glob (``send_*``) or a regex (``re:^send_(email|sms)$``), or a list: any may match."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class LabelTemplate(_Strict):
    """A label as written in a policy; fields left out keep the default they refine."""

    confidentiality: ConfName | None = None
    integrity: IntegName | None = None
    readers: list[str] | None = Field(
        default=None, description="Principals allowed to read; absent means everyone."
    )
    categories: list[CategoryName] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="Source tags to add.")

    def over(self, base: LabelTemplate) -> LabelTemplate:
        """This template's explicit fields over ``base``; sources and categories add up."""
        data = base.model_dump()
        data.update(self.model_dump(include=self.model_fields_set - {"sources", "categories"}))
        data["categories"] = sorted(set(base.categories) | set(self.categories))
        data["sources"] = sorted(set(base.sources) | set(self.sources))
        return LabelTemplate.model_validate(data)

    def to_spec(self) -> LabelSpec:
        return LabelSpec.model_validate(self.model_dump())


class Clearance(_Strict):
    """The most an agent (or the outside world) may read."""

    confidentiality: ConfName | None = Field(
        default=None, description="Highest level it may read; absent means the lowest."
    )
    readers: list[str] = Field(
        default_factory=list,
        description="Reader identities it holds besides its own id (labels with a readers "
        "set are readable only by those named there).",
    )
    categories: list[CategoryName] = Field(
        default_factory=list, description="Categories it is cleared for."
    )


class AgentSpec(_Strict):
    description: str = ""
    clearance: Clearance = Field(default_factory=Clearance)
    may_lower: bool = Field(
        default=False,
        description="May its label annotations lower a label (declassify/endorse by "
        "assertion)? Raising is always allowed.",
    )
    key_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="If set, lowering also needs a key whose SHA-256 hex digest is this.",
    )


# Argument names that reach a place outside the system whatever the tool does (a URL fetched,
# a query sent to a search engine, a webhook called): glob patterns, matched against an
# argument's last path part. Read tools are channels too: a URL chosen by injected text, or
# one carrying a secret, leaks through a plain GET.
OUTWARD_ARGUMENTS = (
    "url",
    "*_url",
    "uri",
    "link",
    "href",
    "endpoint",
    "webhook",
    "query",
    "q",
    "*_query",
    "search",
    "host",
    "hostname",
    "domain",
)


class ToolSpec(_Strict):
    effect: Effect
    description: str = ""
    outward: list[str] = Field(
        default_factory=list,
        description="More argument names (globs) of this tool that reach outside the system "
        "(besides `defaults.outward_arguments`).",
    )


class DefaultLabels(_Strict):
    """Labels for inputs no source rule matches (secure by default: only the client's own
    messages are trusted)."""

    tool_result: LabelTemplate = Field(default_factory=lambda: LabelTemplate(integrity="untrusted"))
    document: LabelTemplate = Field(default_factory=lambda: LabelTemplate(integrity="untrusted"))
    message: LabelTemplate = Field(default_factory=lambda: LabelTemplate(integrity="trusted"))
    agent_message: LabelTemplate = Field(
        default_factory=lambda: LabelTemplate(integrity="untrusted")
    )


class Defaults(_Strict):
    labels: DefaultLabels = Field(default_factory=DefaultLabels)
    unknown_tool_effect: Effect = Field(
        default=Effect.EXTERNAL, description="Effect of tools not declared under `tools`."
    )
    required_integrity: IntegName | None = Field(
        default=None,
        description="Integrity a side-effecting call and its arguments need (baseline); "
        "absent means the top integrity level.",
    )
    external_clearance: Clearance = Field(
        default_factory=Clearance,
        description="What may leave the system through external tools and egress.",
    )
    on_clearance_violation: Literal["deny", "redact"] = "deny"
    outward_arguments: list[str] = Field(
        default_factory=lambda: list(OUTWARD_ARGUMENTS),
        description="Argument names (globs, matched against an argument's last path part) that "
        "reach outside the system on every tool, read-only or not: they must have the "
        "required integrity and be cleared for the outside (baseline:outward-argument).",
    )


class LabelCondition(_Strict):
    """Conditions on one label; all given conditions must hold."""

    integrity_below: IntegName | None = None
    integrity_at_least: IntegName | None = None
    confidentiality_above: ConfName | None = None
    confidentiality_at_least: ConfName | None = None
    confidentiality_at_most: ConfName | None = None
    sources_match: Patterns | None = Field(
        default=None, description="Some source of the label matches one of the patterns."
    )
    categories_any: list[CategoryName] | None = None
    categories_all: list[CategoryName] | None = None
    flows_to: Literal["recipient_clearance", "agent_clearance", "external_clearance"] | None = None
    not_flows_to: Literal["recipient_clearance", "agent_clearance", "external_clearance"] | None = (
        None
    )
    any_of: list[LabelCondition] | None = Field(
        default=None, description="At least one of these nested conditions holds."
    )
    none_of: list[LabelCondition] | None = Field(
        default=None, description="None of these nested conditions holds."
    )


class ArgCondition(_Strict):
    """Conditions on one tool-call argument (value and label)."""

    present: bool | None = None
    matches: Patterns | None = Field(
        default=None, description="The value (or, for a list, some element) matches."
    )
    not_matches: Patterns | None = Field(
        default=None, description="The value (or, for a list, some element) matches none."
    )
    when: LabelCondition | None = None


class _Rule(_Strict):
    id: str = Field(min_length=1)
    description: str = ""


class SourceRule(_Rule):
    kind: SourceKind | list[SourceKind] | None = None
    tool: Patterns | None = None
    source: Patterns | None = Field(default=None, description="Retrieval source name.")
    url: Patterns | None = None
    agent: Patterns | None = None
    role: Patterns | None = None
    label: LabelTemplate
    stop: bool = Field(default=False, description="Stop looking at later source rules.")


class RedactSpec(_Strict):
    args: list[str] = Field(
        default_factory=list, description="Arguments to redact; empty: those the rule matched."
    )
    patterns: list[str] = Field(
        default_factory=list, description="Regexes of spans to redact; empty: whole values."
    )

    @model_validator(mode="after")
    def _regexes(self) -> RedactSpec:
        for p in self.patterns:
            check_pattern("re:" + p)
        return self


class SinkRule(_Rule):
    kind: SinkKind | list[SinkKind] | None = None
    tool: Patterns | None = None
    effect: Effect | list[Effect] | None = None
    agent: Patterns | None = None
    recipient: Patterns | None = None
    handoff: bool | None = Field(
        default=None,
        description="true: only flows handed to an agent other than the caller; false: only "
        "flows that stay with the caller.",
    )
    when: LabelCondition | None = Field(default=None, description="On the call's label.")
    args: dict[str, ArgCondition] = Field(
        default_factory=dict,
        description="Argument name (glob) to condition; each entry must hold for some "
        "argument whose name matches.",
    )
    action: Action
    reason: str | None = Field(default=None, description="Reason template (str.format).")
    redact: RedactSpec | None = None
    override_baseline: bool = Field(
        default=True,
        description="A matching non-deny rule suppresses the built-in baseline rules.",
    )
    notice: str | None = Field(
        default=None,
        min_length=1,
        description="prompt sink, allow/log only: a visible text (template) put before the "
        "item when it passes, e.g. a warning the reading model sees.",
    )

    @model_validator(mode="after")
    def _notice_at_prompt(self) -> SinkRule:
        # A notice is shown by the enforcement point of the prompt sink, and only with an item
        # that reaches the model: anywhere else it would be a setting that does nothing.
        if self.notice is None:
            return self
        if not self.targets_prompt():
            raise ValueError("notice needs kind: prompt (it is shown with a prompt item)")
        if self.action not in (Action.ALLOW, Action.LOG):
            raise ValueError("notice needs action allow or log (a withheld item shows none)")
        return self

    def targets_prompt(self) -> bool:
        """Does the rule name the prompt sink? (Rules without ``kind`` do not apply there.)"""
        kinds = self.kind if isinstance(self.kind, list) else [self.kind]
        return SinkKind.PROMPT in kinds


class _TransformRule(_Rule):
    kind: str | list[str] | None = None
    tool: Patterns | None = None
    source: Patterns | None = None
    url: Patterns | None = None
    agent: Patterns | None = None
    recipient: Patterns | None = None
    when: LabelCondition | None = None
    reason: str | None = None


class DeclassifyRule(_TransformRule):
    to_confidentiality: ConfName | None = None
    remove_categories: list[CategoryName] = Field(default_factory=list)
    add_readers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _does_something(self) -> DeclassifyRule:
        if not (self.to_confidentiality or self.remove_categories or self.add_readers):
            raise ValueError("needs to_confidentiality, remove_categories or add_readers")
        return self


class EndorseRule(_TransformRule):
    to_integrity: IntegName
