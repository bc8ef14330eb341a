"""Labeled items: the units a label attaches to, with the reasons it was given.

Labels attach per item, never per conversation: each message part, retrieved document, tool
result and tool-call argument carries its own label and the provenance that explains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from labelgate.guard.ids import new_id
from labelgate.guard.labels import Label


class ItemKind(StrEnum):
    MESSAGE_PART = "message_part"  # a system/user/assistant message or one of its parts
    DOCUMENT = "document"  # a retrieved or ingested document
    TOOL_RESULT = "tool_result"
    TOOL_ARGUMENT = "tool_argument"
    OUTPUT = "output"  # what a model produced


class LabelOrigin(StrEnum):
    """How a label (or part of it) arrived."""

    DEFAULT = "default"  # nothing said otherwise: the lattice bottom
    SOURCE_RULE = "source_rule"  # a policy source rule (tool, retrieval source, agent)
    ANNOTATION = "annotation"  # a client asserted it
    FINGERPRINT = "fingerprint"  # re-identified text seen before
    PROPAGATION = "propagation"  # computed from the inputs of an LLM call
    DECLASSIFY = "declassify"  # lowered by an explicit policy rule
    ENDORSE = "endorse"  # integrity raised by an explicit policy rule


@dataclass(frozen=True, slots=True)
class LabelReason:
    """One reason for (part of) an item's label, as a person would read it."""

    origin: LabelOrigin
    detail: str
    rule: str | None = None  # the id of the policy rule, when one gave it
    ref: str | None = None  # another item, a stored fingerprint, a propagator name...

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpickle_provenance, (self.origin.value, self.detail, self.rule, self.ref)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin.value,
            "detail": self.detail,
            "rule": self.rule,
            "ref": self.ref,
        }


def _unpickle_provenance(
    origin: str, detail: str, rule: str | None, ref: str | None
) -> LabelReason:
    return LabelReason(LabelOrigin(origin), detail, rule, ref)


def _unpickle_item(
    text: str,
    label: Label,
    kind: str,
    id: str,
    role: str | None,
    name: str | None,
    provenance: list[LabelReason],
) -> LabeledItem:
    return LabeledItem(text, label, ItemKind(kind), id, role, name, provenance)


def new_item_id() -> str:
    return new_id()[:16]


@dataclass(slots=True)
class LabeledItem:
    text: str
    label: Label
    kind: ItemKind = ItemKind.MESSAGE_PART
    id: str = field(default_factory=new_item_id)
    role: str | None = None  # chat role for message parts
    name: str | None = None  # tool name, document source, argument name...
    provenance: list[LabelReason] = field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain values (see ``Label.__reduce__``): items travel to the audit process.
        values = (self.text, self.label, self.kind.value, self.id, self.role, self.name)
        return _unpickle_item, (*values, self.provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "role": self.role,
            "name": self.name,
            "label": self.label.to_dict(),
            "provenance": [p.to_dict() for p in self.provenance],
        }


@dataclass(slots=True)
class LLMCall:
    """The labeled inputs of one model call, in prompt order, and the request parameters.

    ``items`` are the context a propagator may drop or keep; the model sees them rendered as
    chat messages (see ``guard.models.render_messages``).
    """

    items: list[LabeledItem]
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
