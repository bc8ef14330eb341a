"""Spans recorded after the fact: what the SDK would have made, for exporters and the store."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, Status, StatusCode

from labelgate.guard import semconv as sc
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.labels import Lattice
from labelgate.guard.recorded_spans import RecordedSpan, RecordedSpans, SpanStart
from labelgate.guard.tracing import (
    TracingConfig,
    exporters_of,
    get_tracer,
    setup_tracing,
    span_to_record,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
LABEL = Lattice().label("secret", "untrusted", sources=["web:evil.example"])


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = setup_tracing(TracingConfig(exporters=["memory"]))
    exporter = exporters_of(provider)["memory"]
    assert isinstance(exporter, InMemorySpanExporter)
    yield provider, exporter
    provider.shutdown()


def _start(spans: RecordedSpans, start_ns: int = 1, traceparent: str | None = None) -> SpanStart:
    start = spans.start("chat m", kind=SpanKind.CLIENT, start_ns=start_ns, traceparent=traceparent)
    assert start is not None
    return start


def _decorate(span: object) -> None:
    sc.record_decision(span, "deny", rule="r1", reason="no", sink="tool:send", label=LABEL)  # type: ignore[arg-type]
    sc.set_label(span, LABEL)  # type: ignore[arg-type]
    span.set_status(Status(StatusCode.ERROR, "denied"))  # type: ignore[attr-defined]


def test_a_recorded_span_is_what_the_sdk_records(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    attributes = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "m"}
    with get_tracer(provider).start_as_current_span(
        "chat m", kind=SpanKind.CLIENT, attributes=attributes, start_time=1_000
    ) as sdk_span:
        _decorate(sdk_span)
    spans = RecordedSpans(provider)
    recorded = spans.open(_start(spans, 1_000), attributes)
    _decorate(recorded)
    recorded.end(end_time=2_000)
    sdk, ours = (span_to_record(s) for s in exporter.get_finished_spans())
    assert ours == recorded.record()
    assert ours.start_ns == 1_000 and ours.end_ns == 2_000
    assert (ours.name, ours.kind, ours.status, ours.status_message, ours.scope) == (
        sdk.name,
        sdk.kind,
        sdk.status,
        sdk.status_message,
        sdk.scope,
    )
    assert ours.attributes == sdk.attributes
    assert ours.resource == sdk.resource
    strip = [{**e, "timestamp_ns": 0} for e in sdk.events]
    assert [{**e, "timestamp_ns": 0} for e in ours.events] == strip
    assert ours.trace_id != sdk.trace_id and len(ours.span_id) == 16


def test_the_callers_traceparent_is_the_parent(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    spans = RecordedSpans(provider)
    span = spans.open(_start(spans, traceparent=f"00-{TRACE}-{PARENT}-01"), {})
    span.end()
    span.end()  # a second end changes nothing, as in the SDK
    (exported,) = exporter.get_finished_spans()
    record = span_to_record(exported)
    assert (record.trace_id, record.parent_id) == (TRACE, PARENT)


def test_the_sampler_decides(memory: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = memory
    spans = RecordedSpans(provider)
    unsampled = f"00-{TRACE}-{PARENT}-00"  # the caller's trace is not sampled: neither is ours
    kwargs = {"kind": SpanKind.CLIENT, "start_ns": 1}
    assert spans.start("chat m", traceparent=unsampled, **kwargs) is None  # type: ignore[arg-type]
    off = TracerProvider(sampler=ALWAYS_OFF)
    assert RecordedSpans(off).start("chat m", traceparent=None, **kwargs) is None  # type: ignore[arg-type]
    assert exporter.get_finished_spans() == ()


def test_events_stop_at_the_sdks_limit(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = memory
    spans = RecordedSpans(provider)
    span = spans.open(_start(spans), {})
    for n in range(500):
        span.add_event("e", {"n": n})
    span.end()
    assert len(span.record().events) == 128


def test_the_sqlite_exporter_is_left_to_the_caller(tmp_path: Path) -> None:
    """Its record goes with the caller's batch; the SDK's batch processor never sees it."""
    with AuditWriter(tmp_path / "a.db") as writer:
        provider = setup_tracing(TracingConfig(exporters=["sqlite", "memory"]), writer)
        spans = RecordedSpans(provider)
        assert spans.stores_records and spans.exports
        span = spans.open(_start(spans), {})
        span.end()
        assert len(exporters_of(provider)["memory"].get_finished_spans()) == 1  # type: ignore[attr-defined]
        provider.force_flush()
        writer.flush()
        with AuditStore(tmp_path / "a.db") as store:
            assert store.db["spans"].count == 0
        writer.submit(span.record())
        writer.flush()
        provider.shutdown()
    with AuditStore(tmp_path / "a.db") as store:
        (row,) = store.db["spans"].rows
        assert row["span_id"] == f"{span.get_span_context().span_id:016x}"
        assert store.verify().ok


def test_a_span_rebuilt_elsewhere_from_its_start_is_the_same(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The audit process rebuilds a request's span from its pickled ``SpanStart``."""
    provider, exporter = memory
    spans = RecordedSpans(provider)
    start = _start(spans, 5)
    here = spans.open(start, {sc.GEN_AI_REQUEST_MODEL: "m"})
    _decorate(here)
    here.end(end_time=9)
    there = RecordedSpan(pickle.loads(pickle.dumps(start)), {sc.GEN_AI_REQUEST_MODEL: "m"})
    _decorate(there)
    there.end(end_time=9)
    assert len(exporter.get_finished_spans()) == 1  # only the one opened here is exported
    ours, theirs = here.record(), there.record()
    strip = [{**e, "timestamp_ns": 0} for e in ours.events]
    assert ours.model_copy(update={"events": strip}) == theirs.model_copy(
        update={"events": [{**e, "timestamp_ns": 0} for e in theirs.events]}
    )


def test_what_the_sampler_adds_is_on_the_span_here_and_there() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class Tagging(Sampler):
        def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampled.by": "tagging"})

        def get_description(self) -> str:
            return "tagging"

    spans = RecordedSpans(TracerProvider(sampler=Tagging()))
    start = _start(spans)
    for span in (spans.open(start, {}), RecordedSpan(pickle.loads(pickle.dumps(start)), {})):
        span.end()
        assert span.record().attributes == {"sampled.by": "tagging"}
