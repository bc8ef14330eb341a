"""The policy: the file's model plus the engine entry points the proxy and evals call."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from guard.items import LabelOrigin, Provenance
from guard.labels import Label, Lattice, LatticeConfig, Level
from guard.policy.clearance import readable
from guard.policy.conditions import Env
from guard.policy.errors import PolicyError
from guard.policy.events import Decision, FlowContext, LabelDecision, SinkEvent, SourceContext
from guard.policy.patterns import matches
from guard.policy.spec import (
    AgentSpec,
    DeclassifyRule,
    Defaults,
    Effect,
    EndorseRule,
    SinkRule,
    SourceRule,
    ToolSpec,
    _Strict,
)
from guard.policy.yamlsrc import LineMap, load_yaml

_UNKNOWN_AGENT = AgentSpec(description="built-in default: cleared for the lowest level only")
_SOURCE_CACHE_SIZE = 4096

SourceKey = tuple[str, str | None, str | None, str | None, str | None, str | None]


class Policy(_Strict):
    """A labelgate policy file (YAML); see docs/policies.md for the language."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        title="labelgate policy",
    )

    version: Literal[1] = 1
    name: str = ""
    description: str = ""
    lattice_config: LatticeConfig = Field(default_factory=LatticeConfig, alias="lattice")
    defaults: Defaults = Field(default_factory=Defaults)
    agents: dict[str, AgentSpec] = Field(
        default_factory=dict,
        description="Agent id (or glob, e.g. '*' for unknown agents) to its clearance.",
    )
    tools: dict[str, ToolSpec] = Field(
        default_factory=dict, description="Tool name (or glob) to its effect class."
    )
    sources: list[SourceRule] = Field(default_factory=list)
    sinks: list[SinkRule] = Field(default_factory=list)
    declassify_rules: list[DeclassifyRule] = Field(default_factory=list, alias="declassify")
    endorse_rules: list[EndorseRule] = Field(default_factory=list, alias="endorse")

    _lattice: Lattice = PrivateAttr()
    # A loaded policy is not changed, and labelling a source depends only on its context:
    # each distinct context is labelled once (agents resend the same messages every turn).
    _source_cache: dict[SourceKey, LabelDecision] = PrivateAttr(default_factory=dict)

    # Whether any sink rule names the prompt sink: without one, screening is skipped entirely.
    _screens_prompts: bool = PrivateAttr(default=False)

    def model_post_init(self, _context: Any) -> None:
        self._lattice = Lattice(self.lattice_config)
        self._screens_prompts = any(rule.targets_prompt() for rule in self.sinks)

    # ---- loading ----------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, filename: str = "<policy>") -> Policy:
        data, lines = load_yaml(text, filename)
        return cls.from_data(data, filename, lines)

    @classmethod
    def from_data(
        cls, data: Any, filename: str = "<policy>", lines: LineMap | None = None
    ) -> Policy:
        from guard.policy.loading import validate

        return validate(cls, data, filename, lines or LineMap())

    # ---- lookups ------------------------------------------------------------------------

    @property
    def lattice(self) -> Lattice:
        return self._lattice

    @property
    def screens_prompts(self) -> bool:
        """Does a sink rule decide prompt items (``kind: prompt``)?"""
        return self._screens_prompts

    @property
    def required_integrity(self) -> Level:
        name = self.defaults.required_integrity
        return self._lattice.integ(name) if name else self._lattice.integrity_levels[-1]

    def agent_spec(self, agent: str | None) -> AgentSpec:
        """Exact id first, then the first glob key that matches, then the built-in default."""
        if agent is not None and agent in self.agents:
            return self.agents[agent]
        for pattern, spec in self.agents.items():
            if matches(pattern, agent or ""):
                return spec
        return _UNKNOWN_AGENT

    def tool_effect(self, tool: str | None) -> Effect:
        if tool is not None and tool in self.tools:
            return self.tools[tool].effect
        for pattern, spec in self.tools.items():
            if matches(pattern, tool or ""):
                return spec.effect
        return self.defaults.unknown_tool_effect

    def readable_by(self, label: Label, agent: str | None) -> tuple[bool, str]:
        """May ``agent`` read data labeled ``label``? With the reason."""
        return readable(self._lattice, label, self.agent_spec(agent).clearance, agent)

    def env_for(self, agent: str | None, recipient: str | None) -> Env:
        lat, ext = self._lattice, self.defaults.external_clearance
        return Env(
            lat,
            {
                "agent_clearance": (lambda lb: self.readable_by(lb, agent)) if agent else None,
                "recipient_clearance": (lambda lb: self.readable_by(lb, recipient))
                if recipient
                else None,
                "external_clearance": lambda lb: readable(lat, lb, ext, None),
            },
        )

    # ---- engine -------------------------------------------------------------------------

    def label_source(self, context: SourceContext | dict[str, Any]) -> LabelDecision:
        """The label of an input; on an internal error the top label (fail closed)."""
        from guard.policy.sources import label_source

        try:
            ctx = context if isinstance(context, SourceContext) else SourceContext(**context)
            key = (ctx.kind.value, ctx.tool, ctx.source, ctx.url, ctx.agent, ctx.role)
            cached = self._source_cache.get(key)
            if cached is None:
                cached = label_source(self, ctx)
                if len(self._source_cache) >= _SOURCE_CACHE_SIZE:
                    self._source_cache.clear()  # unbounded contexts (URLs): start over
                self._source_cache[key] = cached
        except Exception as exc:
            top = Label(self._lattice.confidentiality_levels[-1], self._lattice.integrity_levels[0])
            why = f"internal error while labelling ({type(exc).__name__}: {exc}); top label"
            return LabelDecision(top, [Provenance(LabelOrigin.DEFAULT, why, rule="engine:error")])
        # A copy: callers may extend the provenance list (labels are immutable).
        return LabelDecision(cached.label, list(cached.provenance))

    def annotate(
        self, agent: str | None, current: Label, asserted: Label, key: str | None = None
    ) -> LabelDecision:
        """A client's label assertion (raise always; lower only with ``may_lower``/key)."""
        from guard.policy.sources import annotate

        return annotate(self, agent, current, asserted, key)

    def decide(self, event: SinkEvent | dict[str, Any]) -> Decision:
        from guard.policy.sinks import decide

        if not isinstance(event, SinkEvent):
            try:
                event = SinkEvent.model_validate(event)
            except ValidationError as exc:  # a malformed event is denied, not raised
                from guard.policy.sinks import FAIL_CLOSED
                from guard.policy.spec import Action

                msg = f"deny: malformed sink event ({exc.error_count()} errors)"
                return Decision(action=Action.DENY, reason=msg, rule=FAIL_CLOSED)
        return decide(self, event)

    def declassify(
        self, label: Label, context: FlowContext | SourceContext | SinkEvent | dict[str, Any]
    ) -> tuple[Label, Provenance | None]:
        """Lower confidentiality through the matching declassify rules (audited)."""
        return self._transform(LabelOrigin.DECLASSIFY, label, context)

    def endorse(
        self, label: Label, context: FlowContext | SourceContext | SinkEvent | dict[str, Any]
    ) -> tuple[Label, Provenance | None]:
        """Raise integrity through the matching endorse rules (audited)."""
        return self._transform(LabelOrigin.ENDORSE, label, context)

    def _transform(
        self, origin: LabelOrigin, label: Label, context: Any
    ) -> tuple[Label, Provenance | None]:
        from guard.policy.transforms import apply, merged

        try:
            new, trail = apply(self, origin, label, FlowContext.of(context))
        except Exception:  # fail closed: never lower a label because of an error
            return label, None
        return new, merged(trail, origin)

    def summary(self) -> dict[str, int]:
        return {
            "agents": len(self.agents),
            "tools": len(self.tools),
            "sources": len(self.sources),
            "sinks": len(self.sinks),
            "declassify": len(self.declassify_rules),
            "endorse": len(self.endorse_rules),
        }


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror or exc}", str(path)) from None
    return Policy.from_yaml_text(text, str(path))
