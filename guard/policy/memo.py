"""Answers of one loaded policy, remembered across requests.

The proxy asks the same questions again and again: agents resend the same messages every turn,
and the same few labels meet the same few agents, recipients and tools. Each answer kept here
depends only on the policy and on its key, and a loaded policy does not change (``Policy`` is
frozen, nothing edits its rules in place, and a ``model_copy`` gets a memo of its own), so an
answer computed once stays right for the life of the policy.

Keys that hold a label hold its level names too (``label_key``): ``Level`` compares by rank
only, and an answer that names levels must not be shared with an equal label of a lattice whose
levels have other names. Every table is bounded: when one is full it is cleared and refills
(some keys, such as URLs, are unbounded).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from labelgate.guard.items import LabelReason
from labelgate.guard.labels import Label, LabelKey

if TYPE_CHECKING:
    from labelgate.guard.policy.conditions import Env
    from labelgate.guard.policy.events import Decision, LabelDecision
    from labelgate.guard.policy.spec import AgentSpec, Effect, SinkKind, SinkRule

TABLE_SIZE = 4096

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

SourceKey = tuple[str, str | None, str | None, str | None, str | None, str | None, bool]
# (label, sink kind, tool, agent, recipient): the context a sink's declassify/endorse rules see
TransformKey = tuple[LabelKey, str, str | None, str | None, str | None]
# (sink kind, label, (argument name, its label)..., agent, recipient, tool, effect): all a
# decision reads at a sink whose rules never look at argument values
DecisionKey = tuple[
    str,
    LabelKey,
    tuple[tuple[str, LabelKey], ...],
    str | None,
    str | None,
    str | None,
    str | None,
    tuple[tuple[str, tuple[LabelKey, ...]], ...],  # SinkFlow.origins: they change the reason
]


@dataclass(slots=True)
class PolicyMemo:
    sources: dict[SourceKey, LabelDecision] = field(default_factory=dict)
    agents: dict[str | None, AgentSpec] = field(default_factory=dict)
    effects: dict[str | None, Effect] = field(default_factory=dict)
    outward: dict[tuple[str | None, str], bool] = field(default_factory=dict)
    readable: dict[tuple[LabelKey, str | None], tuple[bool, str]] = field(default_factory=dict)
    outside: dict[LabelKey, tuple[bool, str]] = field(default_factory=dict)
    envs: dict[tuple[str | None, str | None], Env] = field(default_factory=dict)
    sink_rules: dict[SinkKind, tuple[SinkRule, ...]] = field(default_factory=dict)
    transforms: dict[TransformKey, tuple[Label, tuple[LabelReason, ...]]] = field(
        default_factory=dict
    )
    reads_values: dict[SinkKind, bool] = field(default_factory=dict)
    decisions: dict[DecisionKey, Decision] = field(default_factory=dict)


def remembered(table: dict[K, V], key: K, compute: Callable[[], V]) -> V:
    """``table[key]``, computed and kept on first use. An exception is raised, not kept."""
    try:
        return table[key]
    except KeyError:
        pass
    return kept(table, key, compute())


def kept(table: dict[K, V], key: K, value: V) -> V:
    """``value``, kept in ``table`` (cleared first when full)."""
    if len(table) >= TABLE_SIZE:
        table.clear()
    table[key] = value
    return value
