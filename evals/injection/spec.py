"""The task format: user tasks with a ground-truth plan and a success check on the final state,
attacker goals with their own plan and check, and the checks both use.

Everything here is pydantic, so tasks load from YAML/JSON as well as from Python.

Plan arguments
    A step's argument values are what the agent must pass. Every value must be *visible* in the
    agent's context when it makes the step (the user's request, a tool result, its own earlier
    calls): a guard that hides or withholds it costs the agent the step. Arguments named in
    ``free`` are text the agent writes itself; only their ``{{value}}`` parts must be visible
    (``{{value|b64}}``, ``|spaced``, ``|head``, ``|tail`` render an encoded copy of the value).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Topology = Literal["single", "reader-actor"]
Role = Literal["assistant", "reader", "actor"]
GoalCategory = Literal["exfiltration", "side_effect", "persistence", "phishing", "substitution"]

PLACEHOLDER = re.compile(r"\{\{([^{}|]+)(?:\|(b64|spaced|head|tail))?\}\}")


class Query(BaseModel):
    """Records of one collection of the final state matching ``where``.

    ``where`` maps a field to a value (equality; numbers compare to the cent) or to an operator
    mapping: ``{contains: TEXT}`` (case-insensitive substring of a string, or an element of a
    list), ``{lacks: TEXT}``, ``{not: VALUE}``. ``new``: only records the agent added or changed.
    """

    model_config = {"extra": "forbid"}

    collection: str
    where: dict[str, Any] = Field(default_factory=dict)
    new: bool = False


class Leak(BaseModel):
    """``secret`` reached a sink the attacker reads: mail to ``to``, a web request to ``to``
    (a host), a post in a public channel, or a document shared with ``to`` or made public.
    Found in any form: verbatim, spaced out, base64, URL-quoted, or split over several records."""

    model_config = {"extra": "forbid"}

    secret: str
    sink: Literal["email", "url", "channel", "document"]
    to: str = ""


class Check(BaseModel):
    """One condition on the final state; exactly one field is set."""

    model_config = {"extra": "forbid"}

    exists: Query | None = None
    absent: Query | None = None
    leak: Leak | None = None
    answer_contains: str | None = None  # the final answer to the user (the user's channel)
    changed_contains: str | None = None  # a record the agent added or changed holds this value

    @model_validator(mode="after")
    def _one(self) -> Check:
        given = [self.exists, self.absent, self.leak, self.answer_contains, self.changed_contains]
        if sum(g is not None for g in given) != 1:
            raise ValueError(
                "a check sets exactly one of exists, absent, leak, answer_contains, "
                "changed_contains"
            )
        return self


class Step(BaseModel):
    """One tool call of a plan, made by ``agent`` (``assistant`` in single-agent tasks)."""

    model_config = {"extra": "forbid"}

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    free: list[str] = Field(default_factory=list)
    agent: Role = "assistant"

    def values(self) -> list[tuple[str, str | None]]:
        """(value, filter) pairs that must be visible before the step can be made."""
        found: list[tuple[str, str | None]] = []
        for name, value in self.args.items():
            if name in self.free:
                found += [(m[1], m[2]) for m in PLACEHOLDER.finditer(str(value))]
            else:
                found += [(v, None) for v in _scalars(value)]
        return found


def _scalars(value: Any) -> list[str]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    return [_text(value)]


def swap(value: Any, old: str, new: str) -> Any:
    """``value`` with ``old`` replaced by ``new``: in text, or a number written as ``old``."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [swap(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: swap(v, old, new) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool) and _text(value) == old:
        number = float(new.replace(",", ""))
        return int(number) if isinstance(value, int) else number
    return value


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


class Substitution(BaseModel):
    """A legitimate value of the task that an attacker swaps for a near-identical one."""

    model_config = {"extra": "forbid"}

    what: str  # "the IBAN of Nordlicht Print"
    value: str
    replacement: str


class Task(BaseModel):
    model_config = {"extra": "forbid"}

    id: str
    domain: str
    prompt: str  # the user's request; unique across tasks (the oracle finds its task by it)
    topology: Topology = "single"
    tools: list[str]  # the (single or actor) agent's tools
    reader_tools: list[str] = Field(default_factory=list)
    plan: list[Step]
    handoff: str = ""  # the reader's note to the actor (a template with {{values}})
    answer: str = "Done."  # the final answer to the user (a template with {{values}})
    success: list[Check]
    injection: str  # the slot in the seed records where an attack is placed
    substitutions: list[Substitution] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Task:
        if self.topology == "reader-actor":
            if not self.reader_tools or not self.handoff:
                raise ValueError(f"task {self.id}: a reader-actor task needs reader_tools, handoff")
            roles = {s.agent for s in self.plan}
            if not roles <= {"reader", "actor"}:
                raise ValueError(f"task {self.id}: steps of a reader-actor task name their agent")
        elif any(s.agent != "assistant" for s in self.plan):
            raise ValueError(f"task {self.id}: single-agent steps belong to 'assistant'")
        for step in self.plan:
            if step.tool not in self.tools_of(step.agent):
                raise ValueError(f"task {self.id}: {step.agent} has no tool {step.tool}")
        return self

    def tools_of(self, role: Role) -> list[str]:
        return self.reader_tools if role == "reader" else self.tools

    def steps_of(self, role: Role) -> list[Step]:
        return [s for s in self.plan if s.agent == role]

    @property
    def roles(self) -> list[Role]:
        return ["reader", "actor"] if self.topology == "reader-actor" else ["assistant"]


class Goal(BaseModel):
    """What an attacker wants done, as an instruction, the plan that does it and its check."""

    model_config = {"extra": "forbid"}

    id: str
    category: GoalCategory
    channel: str  # email, url, channel, document, payment, permission, deletion, deploy, ...
    domain: str | None = None  # None: any domain (common tools only)
    instruction: str  # the sentence an injection carries; unique across goals
    steps: list[Step] = Field(default_factory=list)
    say: str = ""  # text the hijacked agent puts in its answer (phishing)
    check: list[Check]
    secret: str | None = None  # exfiltration: the value to leak (encoding attacks need it)
    substitute: Substitution | None = None  # substitution goals: the swap to make

    def tools(self) -> set[str]:
        return {s.tool for s in self.steps}
