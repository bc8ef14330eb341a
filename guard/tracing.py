"""OpenTelemetry set up in one place: a TracerProvider whose exporters come from config.

Exporters: ``sqlite`` (spans into the audit store, through the AuditWriter), ``otlp-http`` and
``otlp-grpc`` (the official OTLP exporters: Phoenix, Jaeger, Tempo...), ``console`` and
``memory`` (tests). Batching exporters sit behind a BatchSpanProcessor, so ending a span never
waits for a disk or a network; console and memory export at once.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id
from pydantic import BaseModel, Field

from labelgate.guard.audit.errors import AuditWriteError
from labelgate.guard.audit.records import SpanRecord

if TYPE_CHECKING:
    from labelgate.guard.audit.writer import AuditWriter

log = logging.getLogger(__name__)

ExporterName = Literal["sqlite", "otlp-http", "otlp-grpc", "console", "memory"]
_DEFAULT_EXPORTERS: list[ExporterName] = ["sqlite"]
TRACER_NAME = "labelgate"


class TracingConfig(BaseModel):
    model_config = {"extra": "forbid"}

    exporters: list[ExporterName] = Field(default_factory=lambda: list(_DEFAULT_EXPORTERS))
    endpoint: str | None = Field(
        None,
        description="OTLP endpoint. HTTP: a base URL (``/v1/traces`` is added when it has no "
        "path) or the full traces URL; gRPC: ``host:port`` or a URL. Unset: the OTel "
        "environment variables and defaults apply.",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    insecure: bool | None = Field(None, description="gRPC only: no TLS.")
    service_name: str = "labelgate"
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    capture_content: bool = Field(
        False, description="Record prompts, answers and tool arguments/results in spans."
    )
    set_global: bool = Field(False, description="Also make it the global TracerProvider.")


def _attr(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def span_to_record(span: ReadableSpan) -> SpanRecord:
    context = span.get_span_context()
    assert context is not None  # an SDK span always has one
    return SpanRecord(
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
        parent_id=format_span_id(span.parent.span_id) if span.parent else None,
        name=span.name,
        kind=span.kind.name.lower(),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        status=span.status.status_code.name.lower(),
        status_message=span.status.description,
        scope=span.instrumentation_scope.name if span.instrumentation_scope else None,
        attributes={k: _attr(v) for k, v in (span.attributes or {}).items()},
        events=[
            {
                "name": e.name,
                "timestamp_ns": e.timestamp,
                "attributes": {k: _attr(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
        resource={k: _attr(v) for k, v in span.resource.attributes.items()},
    )


class SQLiteSpanExporter(SpanExporter):
    """Finished spans to the audit store, as SpanRecords through the AuditWriter.

    Runs on the BatchSpanProcessor's thread: when the writer's queue is full, that thread
    waits (back-pressure) rather than dropping spans. The writer belongs to the caller.
    """

    def __init__(self, writer: AuditWriter) -> None:
        self.writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            for span in spans:
                self.writer.submit(span_to_record(span))
        except AuditWriteError as exc:
            log.error("spans not exported to the audit store: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            self.writer.flush(timeout_millis / 1000)
        except (AuditWriteError, TimeoutError):
            return False
        return True

    def shutdown(self) -> None:
        """Nothing to release: the writer outlives the provider and is closed by its owner."""


def _http_endpoint(endpoint: str | None) -> str | None:
    if endpoint and urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def _otlp_http(config: TracingConfig) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=_http_endpoint(config.endpoint), headers=config.headers)


def _otlp_grpc(config: TracingConfig) -> SpanExporter:
    # Imported only when asked for: grpc is a heavy import.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    headers = tuple(config.headers.items()) or None
    return OTLPSpanExporter(endpoint=config.endpoint, headers=headers, insecure=config.insecure)


_Installed = dict[str, tuple[SpanExporter, SpanProcessor]]
_INSTALLED: weakref.WeakKeyDictionary[TracerProvider, _Installed] = weakref.WeakKeyDictionary()


def _exporter(
    name: ExporterName,
    config: TracingConfig,
    audit_writer: AuditWriter | None,
    memory_exporter: InMemorySpanExporter | None,
) -> SpanExporter:
    if name == "sqlite":
        if audit_writer is None:
            raise ValueError("the sqlite exporter needs an AuditWriter (audit_writer=...)")
        return SQLiteSpanExporter(audit_writer)
    if name == "otlp-http":
        return _otlp_http(config)
    if name == "otlp-grpc":
        return _otlp_grpc(config)
    if name == "console":
        return ConsoleSpanExporter()
    return memory_exporter or InMemorySpanExporter()


def setup_tracing(
    config: TracingConfig,
    audit_writer: AuditWriter | None = None,
    *,
    memory_exporter: InMemorySpanExporter | None = None,
) -> TracerProvider:
    """Build a TracerProvider with the configured exporters; see ``exporters_of``."""
    attributes = {**config.resource_attributes, "service.name": config.service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    installed: _Installed = {}
    for name in dict.fromkeys(config.exporters):  # each once, in the given order
        exporter = _exporter(name, config, audit_writer, memory_exporter)
        immediate = name in ("console", "memory")
        processor = SimpleSpanProcessor(exporter) if immediate else BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
        installed[name] = (exporter, processor)
    _INSTALLED[provider] = installed
    if config.set_global:
        trace.set_tracer_provider(provider)
    return provider


def exporters_of(provider: TracerProvider) -> dict[str, SpanExporter]:
    """The exporters ``setup_tracing`` gave this provider, by name (e.g. ``["memory"]``)."""
    return {name: exporter for name, (exporter, _) in _INSTALLED.get(provider, {}).items()}


def processors_of(provider: TracerProvider) -> dict[str, SpanProcessor]:
    """The span processor in front of each of those exporters, by exporter name."""
    return {name: processor for name, (_, processor) in _INSTALLED.get(provider, {}).items()}


def get_tracer(provider: TracerProvider) -> trace.Tracer:
    return provider.get_tracer(TRACER_NAME)
