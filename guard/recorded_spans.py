"""Spans recorded after the work they describe has ended: the proxy's one span per request.

The proxy knows what goes on a request's span (decisions, labels, usage) only once the request
is over, and it writes the span after the answer has left. Going through ``Tracer.start_span``
then costs about 130 µs per span on the event loop, mostly the SDK re-checking attribute
values that ``guard.semconv`` built from typed values (measured in ``docs/performance.md``).

``RecordedSpans.start`` does what ``start_span`` does that matters here: the provider's sampler
decides, the ids come from its id generator, the parent is the caller's ``traceparent``. It
returns a ``SpanStart``: plain values, which the audit writer's process can unpickle and
rebuild the same span from. A ``RecordedSpan`` is an ``opentelemetry.trace.Span`` (the
``semconv`` helpers write to it as to any span) that keeps attributes and events as given,
within the SDK's limit on events. Opened with ``RecordedSpans.open``, it goes to the provider's
processors (OTLP, console, memory) as the SDK's ``ReadableSpan`` when it ends. The SQLite
exporter is the exception: the proxy writes the span's ``SpanRecord`` (``RecordedSpan.record``)
in the same transaction as the request's audit records, so the store never holds a request
without its span, and the span does not wait in a second queue, which the SDK's batch
processor empties by dropping spans when it is full.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes, AttributeValue

from labelgate.guard.audit.records import SpanRecord
from labelgate.guard.tracing import TRACER_NAME, processors_of, span_to_record

_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class SpanStart:
    """Who a span is, decided when it starts: plain values, so another process (the audit
    writer's) can rebuild the same span from them."""

    name: str
    kind: SpanKind
    context: SpanContext
    parent: SpanContext | None
    start_ns: int
    resource: dict[str, Any]  # the provider's resource attributes
    scope: str
    max_events: int | None  # None: no limit (OTEL_SPAN_EVENT_COUNT_LIMIT=unset), as in the SDK
    sampler_attributes: dict[str, Any]  # what the sampler adds (none, for the SDK's own)

    @property
    def sampled(self) -> bool:
        return self.context.trace_flags.sampled

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain values: it goes to the audit process with every request, and SpanContext,
        # TraceState and the enum pickle slowly.
        own, parent = self.context, self.parent
        ids = (own.trace_id, own.span_id, int(own.trace_flags), list(own.trace_state.items()))
        parent_ids = (parent.span_id, int(parent.trace_flags)) if parent else None
        values = (self.name, self.kind.value, ids, parent_ids, self.start_ns)
        rest = (self.resource, self.scope, self.max_events, self.sampler_attributes)
        return _unpickle_start, (*values, *rest)


def _unpickle_start(
    name: str,
    kind: int,
    ids: tuple[int, int, int, list[tuple[str, str]]],
    parent_ids: tuple[int, int] | None,
    start_ns: int,
    resource: dict[str, Any],
    scope: str,
    max_events: int | None,
    sampler_attributes: dict[str, Any],
) -> SpanStart:
    trace_id, span_id, flags, state = ids
    context = SpanContext(
        trace_id,
        span_id,
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState(state),
    )
    parent = None
    if parent_ids is not None:
        parent = SpanContext(
            trace_id, parent_ids[0], is_remote=True, trace_flags=TraceFlags(parent_ids[1])
        )
    return SpanStart(
        name,
        SpanKind(kind),
        context,
        parent,
        start_ns,
        resource,
        scope,
        max_events,
        sampler_attributes,
    )


class RecordedSpans:
    """Makes ``RecordedSpan``s for one TracerProvider built by ``setup_tracing``."""

    def __init__(self, provider: TracerProvider, scope: str = TRACER_NAME) -> None:
        processors = processors_of(provider)
        self.stores_records = "sqlite" in processors
        self._processors = [p for name, p in processors.items() if name != "sqlite"]
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        self._resource = provider.resource
        self._resource_attributes = dict(provider.resource.attributes)
        self._scope = scope
        self._max_events = SpanLimits().max_events

    @property
    def exports(self) -> bool:
        """Whether ended spans go to any processor (OTLP, console, memory) here."""
        return bool(self._processors)

    def start(
        self,
        name: str,
        *,
        kind: SpanKind,
        start_ns: int,
        traceparent: str | None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> SpanStart | None:
        """A span that began at ``start_ns``; None when the sampler drops it."""
        context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent, trace_id = None, self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes)
        decision = sampled.decision  # the SDK leaves is_recording/is_sampled unannotated
        if not decision.is_recording():  # type: ignore[no-untyped-call]
            return None
        sampled_flag = decision.is_sampled()  # type: ignore[no-untyped-call]
        flags = TraceFlags.SAMPLED if sampled_flag else TraceFlags.DEFAULT
        own = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampled.trace_state,
        )
        return SpanStart(
            name,
            kind,
            own,
            parent,
            start_ns,
            self._resource_attributes,
            self._scope,
            self._max_events,
            dict(sampled.attributes or {}),
        )

    def open(self, start: SpanStart, attributes: Mapping[str, AttributeValue]) -> RecordedSpan:
        """The span, whose ``end`` hands it to this provider's processors."""
        return RecordedSpan(start, attributes, self._resource, self._ended)

    def _ended(self, span: RecordedSpan) -> None:
        readable = span.readable()
        for processor in self._processors:
            processor.on_end(readable)


class RecordedSpan(trace.Span):
    """A span built after the fact from a ``SpanStart``. Made by ``RecordedSpans.open`` it is
    exported when it ends; made directly (elsewhere) it only gives its ``record``."""

    def __init__(
        self,
        start: SpanStart,
        attributes: Mapping[str, AttributeValue],
        resource: Resource | None = None,
        on_end: Callable[[RecordedSpan], None] | None = None,
    ) -> None:
        self._start = start
        self._name = start.name
        self._resource = resource
        self._on_end = on_end
        self._end_ns: int | None = None
        self._attributes = {**attributes, **start.sampler_attributes}
        self._events: list[Event] = []
        self._status = Status(StatusCode.UNSET)

    # ------------------------------------------------------------------ the Span API
    def get_span_context(self) -> SpanContext:
        return self._start.context

    def is_recording(self) -> bool:
        return self._end_ns is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        limit = self._start.max_events
        if limit is None or len(self._events) < limit:
            self._events.append(Event(name, dict(attributes or {}), timestamp or time.time_ns()))

    def update_name(self, name: str) -> None:
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        values = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.escaped": escaped,
            **(attributes or {}),
        }
        self.add_event("exception", values, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_ns is not None:
            return  # as the SDK: a second end changes nothing
        self._end_ns = end_time or time.time_ns()
        if self._on_end is not None:
            self._on_end(self)

    # ------------------------------------------------------------------ once ended
    def readable(self) -> ReadableSpan:
        """The SDK's form of the span, what exporters take."""
        start = self._start
        return ReadableSpan(
            name=self._name,
            context=start.context,
            parent=start.parent,
            resource=self._resource or Resource(start.resource),
            attributes=self._attributes,
            events=tuple(self._events),
            kind=start.kind,
            status=self._status,
            start_time=start.start_ns,
            end_time=self._end_ns,
            instrumentation_scope=InstrumentationScope(start.scope),
        )

    def record(self) -> SpanRecord:
        """The span as a row of the audit store's ``spans`` table."""
        return span_to_record(self.readable())
