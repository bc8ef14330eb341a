"""Typed audit records: one class per table, each turning itself into one row.

Records are immutable and append-only: a request is written once, when it has finished, so
that its row (and its place in the hash chain) never changes afterwards. Fields holding
structure that varies (labels, provenance, rule chains, span attributes) are stored as JSON
text in a ``<field>_json`` column, so the tables stay plain and readable in any SQLite tool.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from labelgate.guard.ids import new_id
from labelgate.guard.items import LabeledItem
from labelgate.guard.labels import Label

JSONValue = Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def dumps(value: JSONValue) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept, so equal data gives equal text.

    orjson, several times faster than ``json`` (this runs for every JSON field of every audit
    row), writes strings, integers and structure exactly as ``json`` does; small floats differ
    (``0.00001`` for ``1e-05``). What orjson refuses (integers past 64 bits, lone surrogates,
    keys that are not strings) goes through ``json`` as before.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return stdlib_dumps(value)


def stdlib_dumps(value: JSONValue) -> str:
    """``dumps`` as the standard library writes it (the form hashed rows have always had)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _label_to_dict(value: Any) -> Any:
    return value.to_dict() if isinstance(value, Label) else value


class AuditRecord(BaseModel):
    """A row of a hash-chained table. Subclasses name their table and their JSON fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: ClassVar[str]
    json_fields: ClassVar[tuple[str, ...]] = ()

    def key(self) -> str:
        """How a person finds this row again (shown by ``audit verify``)."""
        return self.key_of(self.__dict__)

    @classmethod
    def key_of(cls, fields: Mapping[str, Any]) -> str:
        return str(fields["id"])  # every table but spans has an id

    def to_row(self) -> dict[str, Any]:
        return self.row_of(self.__dict__)

    @classmethod
    def row_of(cls, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The row of a record from its field values (a record's ``__dict__``), without
        building the record: the audit process gets field values, and building a model only
        to take it apart again would cost more than writing its row."""
        row: dict[str, Any] = {}
        for name, value in fields.items():
            if name in cls.json_fields:
                row[f"{name}_json"] = None if value is None else dumps(value)
            elif isinstance(value, bool):
                row[name] = int(value)  # SQLite gives ints back; hash what is stored
            elif isinstance(value, datetime):
                row[name] = _iso(value)
            else:
                row[name] = value
        return row


def _iso(moment: datetime) -> str:
    """As pydantic writes a datetime in JSON, as rows have always held it: UTC as ``Z``."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class _Labeled(AuditRecord):
    @field_validator("label", "previous_label", mode="before", check_fields=False)
    @classmethod
    def _label(cls, value: Any) -> Any:
        return _label_to_dict(value)


class RequestRecord(_Labeled):
    """One proxied model call (or one eval step), written when it has finished."""

    table: ClassVar[str] = "requests"
    json_fields: ClassVar[tuple[str, ...]] = ("label",)

    id: str = Field(default_factory=new_id)
    trace_id: str | None = None
    session_id: str | None = None
    agent: str | None = None
    model: str | None = None
    started: datetime = Field(default_factory=utcnow)
    duration_ms: float | None = None
    status: str = "ok"  # ok | denied | error
    label: dict[str, Any] | None = None  # the label of the answer
    decision: str | None = None  # the strictest action taken (allow, deny, redact, ...)
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class MessageRecord(_Labeled):
    """One message (or message part) of a request, in prompt order; the answer comes last."""

    table: ClassVar[str] = "messages"
    json_fields: ClassVar[tuple[str, ...]] = ("label", "provenance", "tool_calls")

    id: str = Field(default_factory=new_id)
    request_id: str
    position: int
    role: str | None = None
    name: str | None = None
    kind: str = "message_part"
    item_id: str | None = None  # the LabeledItem id, shared by every request that reuses it
    content: str | None = None
    label: dict[str, Any] | None = None
    provenance: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] | None = None

    @classmethod
    def from_item(cls, item: LabeledItem, request_id: str, position: int) -> MessageRecord:
        return cls(
            request_id=request_id,
            position=position,
            role=item.role,
            name=item.name,
            kind=item.kind.value,
            item_id=item.id,
            content=item.text,
            label=item.label.to_dict(),
            provenance=[p.to_dict() for p in item.provenance],
        )


class LabelEventRecord(_Labeled):
    """A label given or changed: source rules, annotations, declassification, endorsement."""

    table: ClassVar[str] = "label_events"
    json_fields: ClassVar[tuple[str, ...]] = ("label", "previous_label")

    id: str = Field(default_factory=new_id)
    request_id: str | None = None
    item_id: str | None = None
    origin: str  # a guard.items.LabelOrigin value
    detail: str
    rule: str | None = None
    ref: str | None = None
    label: dict[str, Any] | None = None
    previous_label: dict[str, Any] | None = None
    created: datetime = Field(default_factory=utcnow)


class DecisionRecord(_Labeled):
    """What the policy did at a sink, the rules that led there, and why."""

    table: ClassVar[str] = "decisions"
    json_fields: ClassVar[tuple[str, ...]] = ("rule_chain", "label")

    id: str = Field(default_factory=new_id)
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    sink: str  # e.g. tool:send_email, answer:agent-b, egress
    action: str  # allow | deny | redact | ask | log
    rule_chain: list[dict[str, Any]] = Field(default_factory=list)
    reason: str = ""
    label: dict[str, Any] | None = None
    created: datetime = Field(default_factory=utcnow)


class SpanRecord(AuditRecord):
    """A finished OpenTelemetry span."""

    table: ClassVar[str] = "spans"
    json_fields: ClassVar[tuple[str, ...]] = ("attributes", "events", "resource")

    trace_id: str  # 32 hex digits, as OTLP viewers show it
    span_id: str  # 16 hex digits
    parent_id: str | None = None
    name: str
    kind: str = "internal"
    start_ns: int
    end_ns: int
    status: str = "unset"  # unset | ok | error
    status_message: str | None = None
    scope: str | None = None  # the instrumentation scope (tracer name)
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
    resource: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def key_of(cls, fields: Mapping[str, Any]) -> str:
        return f"{fields['trace_id']}:{fields['span_id']}"


class SealRecord(AuditRecord):
    """A prune (``AuditStore.prune``): the records up to ``cut_seq`` (written before
    ``before``) were deleted; ``cut_hash`` is the chain's hash at the cut, to which the first
    record kept links. Appended at the head of the chain, so it cannot be changed or removed
    unnoticed, and a store shows that, when and how far it was pruned."""

    table: ClassVar[str] = "seals"
    json_fields: ClassVar[tuple[str, ...]] = ("deleted",)

    id: str = Field(default_factory=new_id)
    created: datetime = Field(default_factory=utcnow)
    before: str  # ISO time: records written before it were deleted
    cut_seq: int
    cut_hash: str
    previous_cut_seq: int | None = None  # the cut of the prune before this one, if any
    deleted: dict[str, int] = Field(default_factory=dict)  # rows deleted per table
    by: str | None = None  # what pruned: a command, a setting


class DeferredRecords:
    """Records the audit writer builds instead of the caller: an object holding what they are
    made of, cheap to hand over. The writer's thread builds them, or, for a writer with a
    child process, the child does after unpickling the object (so its class must be
    importable there), and then building them costs the caller's process no CPU at all.
    A failure to build them is a failure to write them."""

    def records(self) -> list[AuditRecord]:
        raise NotImplementedError

    def __len__(self) -> int:
        """How many records ``records`` makes (the writer counts records)."""
        raise NotImplementedError

    @property
    def journal_key(self) -> str | None:
        """The key of these records in the write-ahead journal (``guard.audit.journal``): of
        entries with one key, the last journaled stands for the others. None: never
        journaled."""
        return None


Submitted = AuditRecord | DeferredRecords


def built(items: Sequence[Submitted]) -> list[AuditRecord]:
    """The records of ``items``, deferred ones built."""
    found: list[AuditRecord] = []
    for item in items:
        if isinstance(item, DeferredRecords):
            found += item.records()
        else:
            found.append(item)
    return found


RECORD_TYPES: tuple[type[AuditRecord], ...] = (
    RequestRecord,
    MessageRecord,
    LabelEventRecord,
    DecisionRecord,
    SpanRecord,
    SealRecord,
)
