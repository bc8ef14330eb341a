"""The propagator interface, its result, and the helpers every propagator shares.

A propagator looks at the labeled inputs of one LLM call and its output and gives the output a
label. The conservative answer is the join of every input label; permissive propagators keep
only the labels of inputs they judge influential and fall back to the join when unsure.

Items whose label is the lattice bottom (public, trusted, no sources) never change a join, so
they are always part of every sub-context and never appear in ``influential`` / ``dropped``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from labelgate.guard.items import LabeledItem, LabelOrigin, LabelReason, LLMCall
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.models import ChatModel, render_messages
from labelgate.guard.values import index, output_values


class Evidence(BaseModel):
    """Why one input was kept or dropped, as a person would read it."""

    item_id: str
    reason: str
    score: float | None = None


class Propagation(BaseModel):
    """The label a propagator gave an output, and why."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    label: Label
    influential: list[str] = Field(description="non-bottom items whose label the result keeps")
    dropped: list[str] = Field(description="non-bottom items whose label the result omits")
    evidence: list[Evidence] = Field(default_factory=list)
    propagator: str
    fell_back: bool = False
    reason: str = ""  # why it fell back, or a one-line summary
    model_calls: int = 0
    seconds: float = 0.0
    restored: list[LabelReason] = Field(
        default_factory=list,
        description="inputs the value guard joined back, each with the value that did it",
    )

    def more_permissive_than(self, other: Label) -> bool:
        return self.label != other and self.label.flows_to(other)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"label", "restored"})
        data["label"] = self.label.to_dict()
        data["restored"] = [r.to_dict() for r in self.restored]
        return data


@runtime_checkable
class Propagator(Protocol):
    name: str

    async def propagate(self, call: LLMCall, output: str, lattice: Lattice) -> Propagation: ...


class BudgetExceeded(RuntimeError):
    """A propagator needed more model calls than it was allowed."""


# --------------------------------------------------------------------------- helpers


def is_bottom(item: LabeledItem, lattice: Lattice) -> bool:
    return item.label.flows_to(lattice.bottom)


def labeled_items(call: LLMCall, lattice: Lattice) -> list[LabeledItem]:
    """The items whose label can matter: everything above the bottom, in prompt order."""
    return [i for i in call.items if not is_bottom(i, lattice)]


def join_label(call: LLMCall, lattice: Lattice) -> Label:
    return lattice.join_all(i.label for i in call.items)


class RunFacts(TypedDict):
    """The keywords of ``conclude``/``fall_back`` a propagator knows before deciding."""

    propagator: str
    started: float
    model_calls: NotRequired[int]


def value_guard(
    call: LLMCall, output: str, lattice: Lattice, label: Label
) -> tuple[Label, list[Evidence], list[LabelReason]]:
    """The value-level safety net every permissive verdict goes through.

    For each value the output states (``guard.values``: numbers, amounts, codes, e-mails,
    URLs, IBANs, dates, names, as written or re-encoded): when no kept input (one whose label
    flows to ``label``, the bottom-labeled ones included) contains it, every dropped input
    that contains it (as written, re-encoded, or as a partial copy) has its label joined back.
    A value the output states that only a dropped input holds came from there, whatever a
    similarity score, a citation or the model's own account says.
    """
    dropped = [i for i in labeled_items(call, lattice) if not i.label.flows_to(label)]
    if not dropped or not output.strip():
        return label, [], []
    evidence: list[Evidence] = []
    reasons: list[LabelReason] = []
    for value in output_values(output):
        kept = [i for i in call.items if i.label.flows_to(label)]
        if any(index(i.text).strictly(value) for i in kept):
            continue
        for item in [i for i in dropped if not i.label.flows_to(label)]:
            if index(item.text).broadly(value):
                label = label | item.label
                shown = value.raw if len(value.raw) <= 60 else value.raw[:57] + "..."
                why = f"value {shown!r} of the output occurs in it and in no kept input"
                evidence.append(Evidence(item_id=item.id, reason=why))
                reasons.append(
                    LabelReason(
                        LabelOrigin.PROPAGATION,
                        f"{item.name or item.role or 'input'} {item.id}: {why}: label joined back",
                        ref=item.id,
                    )
                )
    return label, evidence, reasons


def conclude(
    call: LLMCall,
    lattice: Lattice,
    label: Label,
    *,
    output: str,
    propagator: str,
    started: float,
    evidence: Iterable[Evidence] = (),
    model_calls: int = 0,
    fell_back: bool = False,
    reason: str = "",
) -> Propagation:
    """Build the result for ``label`` after the value guard (``value_guard``): an item is kept
    exactly when its label flows to the final label."""
    label, guarded, restored = value_guard(call, output, lattice, label)
    items = labeled_items(call, lattice)
    if restored:
        reason = f"{reason}; " if reason else ""
        reason += f"value guard joined back {len(restored)} input(s)"
    return Propagation(
        label=label,
        influential=[i.id for i in items if i.label.flows_to(label)],
        dropped=[i.id for i in items if not i.label.flows_to(label)],
        evidence=[*evidence, *guarded],
        propagator=propagator,
        fell_back=fell_back,
        reason=reason,
        model_calls=model_calls,
        seconds=time.perf_counter() - started,
        restored=restored,
    )


def fall_back(
    call: LLMCall,
    lattice: Lattice,
    *,
    propagator: str,
    started: float,
    reason: str,
    evidence: Iterable[Evidence] = (),
    model_calls: int = 0,
) -> Propagation:
    """The conservative join, recorded as a fallback with its reason."""
    return conclude(
        call,
        lattice,
        join_label(call, lattice),
        output="",  # nothing is dropped: no value to guard
        propagator=propagator,
        started=started,
        evidence=evidence,
        model_calls=model_calls,
        fell_back=True,
        reason=reason,
    )


def requery_params(params: dict[str, Any], max_tokens: int | None = None) -> dict[str, Any]:
    """Greedy, seeded decoding with the call's own length limits, so re-queries are comparable."""
    kept = {k: params[k] for k in ("max_tokens", "stop") if params.get(k) is not None}
    if max_tokens is not None:
        kept["max_tokens"] = max_tokens
    return {**kept, "temperature": 0.0, "seed": 0}


class Requery:
    """Re-asks the model with a sub-context; counts calls, enforces a budget, memoises.

    The memo key is the set of kept item ids: two candidates with the same sub-context cost
    one call.
    """

    def __init__(
        self, model: ChatModel, call: LLMCall, *, budget: int, max_tokens: int | None = None
    ) -> None:
        self._model = model
        self._call = call
        self._budget = budget
        self._params = requery_params(call.params, max_tokens)
        self._memo: dict[frozenset[str], str] = {}
        self.calls = 0

    async def answer(self, keep: Sequence[LabeledItem]) -> str:
        key = frozenset(i.id for i in keep)
        if key in self._memo:
            return self._memo[key]
        if self.calls >= self._budget:
            raise BudgetExceeded(f"model-call budget of {self._budget} spent")
        self.calls += 1
        result = await self._model.chat(render_messages(keep), **self._params)
        self._memo[key] = result.text
        return result.text


def numbered_sources(items: Sequence[LabeledItem]) -> str:
    """Render the items a model may cite as ``[1] text`` blocks (1-based, prompt order)."""
    return "\n\n".join(f"[{n}] {item.text.strip()}" for n, item in enumerate(items, 1))


def task_text(call: LLMCall, lattice: Lattice) -> str:
    """The bottom-labeled user text (the question or task), for prompts that ask about use."""
    parts = [i.text for i in call.items if is_bottom(i, lattice) and i.role == "user"]
    return "\n".join(parts).strip()
