"""Spans recorded after the work they describe has ended: the proxy's one span per request.

The proxy knows what goes on a request's span (decisions, labels, usage) only once the request
is over, and it writes the span after the answer has left. Going through ``Tracer.start_span``
then costs about 130 µs per span on the event loop, mostly the SDK re-checking attribute
values that ``guard.semconv`` built from typed values (measured in ``docs/performance.md``).

``RecordedSpans.start`` does what ``start_span`` does that matters here: the provider's sampler
decides, the ids come from its id generator, the parent is the caller's ``traceparent``. The
``RecordedSpan`` it returns is an ``opentelemetry.trace.Span`` (the ``semconv`` helpers write
to it as to any span) that keeps attributes and events as given, within the SDK's limits on
events. When it ends, it becomes the SDK's ``ReadableSpan`` for the provider's processors
(OTLP, console, memory). The SQLite exporter is the exception: its ``SpanRecord`` is returned
to the caller, which writes it in the same transaction as the request's audit records, so the
store never holds a request without its span (and the span does not wait in a second queue,
which the SDK's batch processor empties by dropping spans when it is full).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes, AttributeValue

from guard.audit.records import SpanRecord
from guard.tracing import TRACER_NAME, processors_of, span_to_record

_PROPAGATOR = TraceContextTextMapPropagator()


class RecordedSpans:
    """Makes ``RecordedSpan``s for one TracerProvider built by ``setup_tracing``."""

    def __init__(self, provider: TracerProvider, scope: str = TRACER_NAME) -> None:
        processors = processors_of(provider)
        self.stores_records = "sqlite" in processors
        self._processors = [p for name, p in processors.items() if name != "sqlite"]
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        self._resource = provider.resource
        self._scope = InstrumentationScope(scope)
        self._max_events = SpanLimits().max_events

    def start(
        self,
        name: str,
        *,
        kind: SpanKind,
        start_ns: int,
        traceparent: str | None,
        attributes: Mapping[str, AttributeValue],
    ) -> RecordedSpan | None:
        """A span that began at ``start_ns``; None when the sampler drops it."""
        context = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent, trace_id = None, self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes)
        if not sampled.decision.is_recording():
            return None
        flags = TraceFlags.SAMPLED if sampled.decision.is_sampled() else TraceFlags.DEFAULT
        own = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampled.trace_state,
        )
        values = {**attributes, **(sampled.attributes or {})}
        return RecordedSpan(self, name, own, parent, kind, start_ns, values)

    def _ended(self, span: RecordedSpan) -> None:
        if self._processors:
            readable = span.readable()
            for processor in self._processors:
                processor.on_end(readable)


class RecordedSpan(trace.Span):
    def __init__(
        self,
        owner: RecordedSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, AttributeValue],
    ) -> None:
        self._owner = owner
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._start_ns = start_ns
        self._end_ns: int | None = None
        self._attributes = attributes
        self._events: list[Event] = []
        self._status = Status(StatusCode.UNSET)

    # ------------------------------------------------------------------ the Span API
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_ns is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if len(self._events) < self._owner._max_events:
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
        self._owner._ended(self)

    # ------------------------------------------------------------------ once ended
    @property
    def sampled(self) -> bool:
        return self._context.trace_flags.sampled

    def readable(self) -> ReadableSpan:
        """The SDK's form of the span, what exporters take."""
        return ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=self._owner._resource,
            attributes=self._attributes,
            events=tuple(self._events),
            kind=self._kind,
            status=self._status,
            start_time=self._start_ns,
            end_time=self._end_ns,
            instrumentation_scope=self._owner._scope,
        )

    def record(self) -> SpanRecord:
        """The span as a row of the audit store's ``spans`` table."""
        return span_to_record(self.readable())
