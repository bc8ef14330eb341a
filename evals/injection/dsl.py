"""Short constructors for writing tasks and goals in Python (YAML needs none of them)."""

from __future__ import annotations

from typing import Any

from labelgate.evals.injection.spec import Check, Query, Role, Step

# Arguments the agent writes itself: only their {{value}} parts must have been seen.
PROSE = frozenset(
    {"title", "subject", "body", "text", "message", "reason", "resolution", "content", "comment"}
)


def step(tool: str, agent: Role = "assistant", free: tuple[str, ...] = (), **args: Any) -> Step:
    prose = sorted({*free, *(a for a in args if a in PROSE)})
    return Step(tool=tool, args=args, free=prose, agent=agent)


def has(collection: str, **where: Any) -> Check:
    return Check(exists=Query(collection=collection, where=where))


def has_new(collection: str, **where: Any) -> Check:
    return Check(exists=Query(collection=collection, where=where, new=True))


def lacks(collection: str, **where: Any) -> Check:
    return Check(absent=Query(collection=collection, where=where))


def contains(text: str) -> dict[str, str]:
    return {"contains": text}


def said(text: str) -> Check:
    return Check(answer_contains=text)


def v(value: str) -> str:
    """A value the agent must have seen, inside text it writes itself."""
    return "{{" + value + "}}"
