"""What the trace queries return: plain pydantic views of the audit and eval tables.

One query layer (``guard.audit.query``) fills these; two views show them: the terminal
(``labelgate trace``) and the read-only web UI (``proxy.ui``). No rendering here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SEVERITY = {"allow": 0, "log": 1, "redact": 2, "ask": 3, "deny": 4}
OP_KIND = {"chat": "model call", "execute_tool": "tool call", "invoke_agent": "agent"}


class NotFound(LookupError):
    """No trace, request, eval run or sample by that id."""


def loads(text: str | None, default: Any = None) -> Any:
    """JSON text from a ``*_json`` column; a broken value is shown raw rather than failing."""
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return text


def strictest(actions: list[str | None]) -> str | None:
    present = [a for a in actions if a]
    return max(present, key=lambda a: SEVERITY.get(a, 0)) if present else None


class LabelView(BaseModel):
    """A stored label (``Label.to_dict``), read without needing the policy's lattice."""

    confidentiality: str = "?"
    integrity: str = "?"
    readers: list[str] | None = None
    categories: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> LabelView | None:
        data = loads(text)
        return cls.model_validate(data) if isinstance(data, dict) else None

    @property
    def short(self) -> str:
        """The same compact form as ``Label.short``: ``secret/untrusted src=web``."""
        parts = [f"{self.confidentiality}/{self.integrity}"]
        if self.readers is not None:
            parts.append("readers=" + ",".join(self.readers))
        if self.categories:
            parts.append("cat=" + ",".join(self.categories))
        if self.sources:
            parts.append("src=" + ",".join(self.sources))
        return " ".join(parts)


class Evidence(BaseModel):
    """Why an item has its label: one provenance entry or label event."""

    origin: str
    detail: str = ""
    rule: str | None = None
    ref: str | None = None
    label: LabelView | None = None  # label events only: the label given
    previous_label: LabelView | None = None  # declassify / endorse: what it was before


class MessageView(BaseModel):
    id: str
    position: int
    role: str | None = None
    name: str | None = None
    kind: str
    item_id: str | None = None
    content: str | None = None
    label: LabelView | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class RuleStep(BaseModel):
    """One rule the policy engine evaluated at a sink, as it reported it."""

    model_config = ConfigDict(extra="allow")

    rule: str | None = None
    section: str | None = None
    matched: bool | None = None
    decisive: bool | None = None
    action: str | None = None
    why: str | None = None


class DecisionView(BaseModel):
    id: str
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    sink: str
    action: str
    reason: str = ""
    chain: list[RuleStep] = Field(default_factory=list)
    label: LabelView | None = None
    created: str | None = None

    @property
    def rule(self) -> str | None:
        """The rule that decided (the decisive step of the chain)."""
        return next((s.rule for s in self.chain if s.decisive), None)


class RequestView(BaseModel):
    id: str
    trace_id: str | None = None
    session_id: str | None = None
    agent: str | None = None
    model: str | None = None
    started: str | None = None
    duration_ms: float | None = None
    status: str | None = None
    decision: str | None = None
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    label: LabelView | None = None
    messages: list[MessageView] = Field(default_factory=list)
    decisions: list[DecisionView] = Field(default_factory=list)


class SpanView(BaseModel):
    trace_id: str
    span_id: str
    parent_id: str | None = None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    offset_ms: float = 0.0  # from the start of the trace
    status: str = "unset"
    status_message: str | None = None
    scope: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    resource: dict[str, Any] = Field(default_factory=dict)
    children: list[SpanView] = Field(default_factory=list)
    request: RequestView | None = None  # the proxy request this span recorded
    decisions: list[DecisionView] = Field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def operation(self) -> str:
        """``model call``, ``tool call``, ``agent`` or the span's own kind."""
        op = self.attributes.get("gen_ai.operation.name")
        return OP_KIND.get(str(op), str(op)) if op else self.kind

    @property
    def label(self) -> str | None:
        value = self.attributes.get("labelgate.label")
        return str(value) if value is not None else None

    def walk(self) -> list[SpanView]:
        return [self, *(s for child in self.children for s in child.walk())]


class TraceView(BaseModel):
    trace_id: str
    roots: list[SpanView] = Field(default_factory=list)
    requests: list[RequestView] = Field(default_factory=list)  # those with no span of their own
    focus: str | None = None  # a span id asked for (an eval sample), else None
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def spans(self) -> list[SpanView]:
        return [s for root in self.roots for s in root.walk()]

    @property
    def duration_ms(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e6


class TraceSummary(BaseModel):
    """One line of ``trace list``."""

    trace_id: str
    started: datetime | None = None
    duration_ms: float | None = None
    root: str = ""
    spans: int = 0
    requests: int = 0
    agents: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    sessions: list[str] = Field(default_factory=list)
    decision: str | None = None
    status: str | None = None
    labels: list[str] = Field(default_factory=list)
    eval_run_id: str | None = None


class TraceFilter(BaseModel):
    """Filters of ``trace list`` and the UI's list; all optional, combined with AND."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    session: str | None = None
    model: str | None = None
    decision: str | None = None
    label: str | None = Field(
        None, description="a level, category, reader or source any item of the trace carries"
    )
    search: str | None = Field(None, description="full-text search of messages and reasons")
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class ScoreView(BaseModel):
    scorer: str
    value: str | None = None
    numeric: float | None = None
    answer: str | None = None
    explanation: str | None = None
    grader: str | None = None


class ScoreSummary(BaseModel):
    scorer: str
    n: int
    scored: int  # with a numeric value
    mean: float | None = None


class TranscriptMessage(BaseModel):
    idx: int
    role: str | None = None
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class EvalSampleView(BaseModel):
    run_id: str
    sample_id: str
    scenario_id: str | None = None
    variant: str | None = None
    seed: int | None = None
    status: str | None = None
    error: str | None = None
    attempts: int | None = None
    stop_reason: str | None = None
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    model_calls: int | None = None
    duration_s: float | None = None
    trace_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    scores: list[ScoreView] = Field(default_factory=list)
    messages: list[TranscriptMessage] = Field(default_factory=list)


class EvalRunView(BaseModel):
    run_id: str
    family: str | None = None
    model: str | None = None
    via_proxy: str | None = None
    status: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    n_samples: int | None = None
    cache_enabled: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    trace_id: str | None = None
    done: int = 0
    failed: int = 0
    scores: list[ScoreSummary] = Field(default_factory=list)
    samples: list[EvalSampleView] = Field(default_factory=list)
