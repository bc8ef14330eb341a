"""The tracer provider for an eval run: spans into the audit store (guard.tracing's sqlite
exporter through an AuditWriter), optionally also OTLP, from one TracingConfig."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider


@contextmanager
def audit_tracing(
    db_path: Path, *, extra_exporters: list[str] | None = None, capture_content: bool = False
) -> Iterator[TracerProvider]:
    """A provider exporting to the audit store at ``db_path``; flushed and closed on exit."""
    from labelgate.guard.audit.writer import AuditWriter
    from labelgate.guard.tracing import TracingConfig, setup_tracing

    config = TracingConfig(
        exporters=["sqlite", *(extra_exporters or [])],
        service_name="labelgate-evals",
        capture_content=capture_content,
    )
    writer = AuditWriter(db_path)
    provider = setup_tracing(config, writer)
    try:
        yield provider
    finally:
        provider.force_flush()
        provider.shutdown()
        writer.close()
