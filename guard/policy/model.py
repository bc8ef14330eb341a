"""The policy: the file's model plus the engine entry points the proxy and evals call."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, ValidationError

from labelgate.guard.items import LabelOrigin, LabelReason
from labelgate.guard.labels import Label, Lattice, LatticeConfig, Level, label_key
from labelgate.guard.policy.clearance import readable
from labelgate.guard.policy.conditions import Env
from labelgate.guard.policy.errors import PolicyError
from labelgate.guard.policy.events import (
    Decision,
    FlowContext,
    LabelDecision,
    SinkEvent,
    SinkFlow,
    SourceContext,
)
from labelgate.guard.policy.memo import PolicyMemo, remembered
from labelgate.guard.policy.patterns import matches
from labelgate.guard.policy.sinks import decide as decide_at_sink
from labelgate.guard.policy.sinks import reads_values as sink_reads_values
from labelgate.guard.policy.sources import label_source as label_of_source
from labelgate.guard.policy.spec import (
    AgentSpec,
    DeclassifyRule,
    Defaults,
    Effect,
    EndorseRule,
    SinkKind,
    SinkRule,
    SourceKind,
    SourceRule,
    ToolSpec,
    _Strict,
)
from labelgate.guard.policy.yamlsrc import LineMap, load_yaml

_UNKNOWN_AGENT = AgentSpec(description="built-in default: cleared for the lowest level only")
# What a policy derives from its fields (functools.cached_property, kept in the instance's
# __dict__: a plain attribute read, where a pydantic private attribute costs microseconds).
_DERIVED = ("lattice", "screens_prompts", "required_integrity", "_memo")


class Policy(_Strict):
    """A labelgate policy file (YAML); see docs/policies.md for the language."""

    # A loaded policy does not change (frozen), so the engine remembers its answers per
    # policy (guard.policy.memo). Not in the docstring: that is the JSON Schema's description.
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
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

    def model_post_init(self, _context: Any) -> None:
        # Made now, before the policy is shared: two threads making the lattice lazily could
        # each make one, and the labels of one would not belong to the other.
        _ = self.lattice

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (perhaps with other fields) derives its own lattice and memo."""
        copied = super().model_copy(update=update, deep=deep)
        for name in _DERIVED:
            copied.__dict__.pop(name, None)
        copied.model_post_init(None)
        return copied

    def __getstate__(self) -> dict[Any, Any]:
        # Pickled without what it derives (the memo holds closures): made again when loaded.
        state = super().__getstate__()
        state["__dict__"] = {k: v for k, v in state["__dict__"].items() if k not in _DERIVED}
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.model_post_init(None)

    # ---- loading ----------------------------------------------------------------------

    @classmethod
    def from_yaml_text(cls, text: str, filename: str = "<policy>") -> Policy:
        data, lines = load_yaml(text, filename)
        return cls.from_data(data, filename, lines)

    @classmethod
    def from_data(
        cls, data: Any, filename: str = "<policy>", lines: LineMap | None = None
    ) -> Policy:
        from labelgate.guard.policy.loading import validate

        return validate(cls, data, filename, lines or LineMap())

    # ---- lookups ------------------------------------------------------------------------

    @cached_property
    def lattice(self) -> Lattice:
        return Lattice(self.lattice_config)

    @cached_property
    def screens_prompts(self) -> bool:
        """Does a sink rule decide prompt items (``kind: prompt``)? Without one, screening is
        skipped entirely."""
        return any(rule.targets_prompt() for rule in self.sinks)

    @cached_property
    def required_integrity(self) -> Level:
        name = self.defaults.required_integrity
        return self.lattice.integ(name) if name else self.lattice.integrity_levels[-1]

    @cached_property
    def _memo(self) -> PolicyMemo:
        return PolicyMemo()

    def agent_spec(self, agent: str | None) -> AgentSpec:
        """Exact id first, then the first glob key that matches, then the built-in default."""
        return remembered(self._memo.agents, agent, lambda: self._agent_spec(agent))

    def _agent_spec(self, agent: str | None) -> AgentSpec:
        if agent is not None and agent in self.agents:
            return self.agents[agent]
        for pattern, spec in self.agents.items():
            if matches(pattern, agent or ""):
                return spec
        return _UNKNOWN_AGENT

    def is_outward(self, tool: str | None, argument: str) -> bool:
        """Does this argument of this tool reach outside the system (a URL, a query)?"""
        return remembered(
            self._memo.outward, (tool, argument), lambda: self._is_outward(tool, argument)
        )

    def _is_outward(self, tool: str | None, argument: str) -> bool:
        name = argument.rsplit(".", 1)[-1].lower()
        patterns = list(self.defaults.outward_arguments)
        if tool is not None:
            for pattern, spec in self.tools.items():
                if pattern == tool or matches(pattern, tool):
                    patterns += spec.outward
                    break
        return any(fnmatchcase(name, pattern.lower()) for pattern in patterns)

    def tool_effect(self, tool: str | None) -> Effect:
        return remembered(self._memo.effects, tool, lambda: self._tool_effect(tool))

    def _tool_effect(self, tool: str | None) -> Effect:
        if tool is not None and tool in self.tools:
            return self.tools[tool].effect
        for pattern, spec in self.tools.items():
            if matches(pattern, tool or ""):
                return spec.effect
        return self.defaults.unknown_tool_effect

    def readable_by(self, label: Label, agent: str | None) -> tuple[bool, str]:
        """May ``agent`` read data labeled ``label``? With the reason."""
        return remembered(
            self._memo.readable,
            (label_key(label), agent),
            lambda: readable(self.lattice, label, self.agent_spec(agent).clearance, agent),
        )

    def readable_outside(self, label: Label) -> tuple[bool, str]:
        """May data labeled ``label`` leave the system (``defaults.external_clearance``)?"""
        ext = self.defaults.external_clearance
        return remembered(
            self._memo.outside, label_key(label), lambda: readable(self.lattice, label, ext, None)
        )

    def env_for(self, agent: str | None, recipient: str | None) -> Env:
        return remembered(
            self._memo.envs, (agent, recipient), lambda: self._env_for(agent, recipient)
        )

    def _env_for(self, agent: str | None, recipient: str | None) -> Env:
        return Env(
            self.lattice,
            {
                "agent_clearance": (lambda lb: self.readable_by(lb, agent)) if agent else None,
                "recipient_clearance": (lambda lb: self.readable_by(lb, recipient))
                if recipient
                else None,
                "external_clearance": self.readable_outside,
            },
        )

    # ---- engine -------------------------------------------------------------------------

    def label_source(self, context: SourceContext | dict[str, Any]) -> LabelDecision:
        """The label of an input; on an internal error the top label (fail closed)."""
        try:
            ctx = context if isinstance(context, SourceContext) else SourceContext(**context)
        except Exception as exc:
            return self._top_label(exc)
        return self.source_label(
            ctx.kind,
            tool=ctx.tool,
            source=ctx.source,
            url=ctx.url,
            agent=ctx.agent,
            role=ctx.role,
            vouched=ctx.vouched,
        )

    def source_label(
        self,
        kind: SourceKind,
        *,
        tool: str | None = None,
        source: str | None = None,
        url: str | None = None,
        agent: str | None = None,
        role: str | None = None,
        vouched: bool = False,
    ) -> LabelDecision:
        """``label_source`` by the context's fields: a context seen before costs no
        ``SourceContext`` (the guard labels every message part of every request)."""

        def compute() -> LabelDecision:
            ctx = SourceContext(
                kind=kind,
                tool=tool,
                source=source,
                url=url,
                agent=agent,
                role=role,
                vouched=vouched,
            )
            return label_of_source(self, ctx)

        try:
            # Labelling a source depends only on its context: each distinct one is labelled once.
            key = (kind.value, tool, source, url, agent, role, vouched)
            cached = remembered(self._memo.sources, key, compute)
        except Exception as exc:
            return self._top_label(exc)
        # A copy: callers may extend the provenance list (labels are immutable).
        return LabelDecision(cached.label, list(cached.provenance))

    def _top_label(self, exc: Exception) -> LabelDecision:
        top = Label(self.lattice.confidentiality_levels[-1], self.lattice.integrity_levels[0])
        why = f"internal error while labelling ({type(exc).__name__}: {exc}); top label"
        return LabelDecision(top, [LabelReason(LabelOrigin.DEFAULT, why, rule="engine:error")])

    def annotate(
        self, agent: str | None, current: Label, asserted: Label, key: str | None = None
    ) -> LabelDecision:
        """A client's label assertion (raise always; lower only with ``may_lower``/key)."""
        from labelgate.guard.policy.sources import annotate

        return annotate(self, agent, current, asserted, key)

    def decide(self, event: SinkEvent | SinkFlow | dict[str, Any]) -> Decision:
        if not isinstance(event, SinkEvent | SinkFlow):
            try:
                event = SinkEvent.model_validate(event)
            except ValidationError as exc:  # a malformed event is denied, not raised
                from labelgate.guard.policy.sinks import FAIL_CLOSED
                from labelgate.guard.policy.spec import Action

                msg = f"deny: malformed sink event ({exc.error_count()} errors)"
                return Decision(action=Action.DENY, reason=msg, rule=FAIL_CLOSED)
        return decide_at_sink(self, event)

    def reads_values(self, kind: SinkKind) -> bool:
        """Can a decision at sinks of ``kind`` depend on the flowing values (a rule matching
        them, or naming ``{value}`` in its reason or notice), not only on labels and names?"""
        return sink_reads_values(self, kind)

    def declassify(
        self, label: Label, context: FlowContext | SourceContext | SinkEvent | dict[str, Any]
    ) -> tuple[Label, LabelReason | None]:
        """Lower confidentiality through the matching declassify rules (audited)."""
        return self._transform(LabelOrigin.DECLASSIFY, label, context)

    def endorse(
        self, label: Label, context: FlowContext | SourceContext | SinkEvent | dict[str, Any]
    ) -> tuple[Label, LabelReason | None]:
        """Raise integrity through the matching endorse rules (audited)."""
        return self._transform(LabelOrigin.ENDORSE, label, context)

    def _transform(
        self, origin: LabelOrigin, label: Label, context: Any
    ) -> tuple[Label, LabelReason | None]:
        from labelgate.guard.policy.transforms import apply, merged

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
