"""The audit store: an append-only, hash-chained log of requests, messages, labels, decisions
and spans (SQLite, or PostgreSQL for several replicas), written off the hot path by a batching
writer thread.

Names are imported lazily so that ``guard.audit.cli`` (and ``labelgate --help``) stays cheap.
"""

from __future__ import annotations

from labelgate.guard.lazy import lazy_exports

_EXPORTS = {
    "AuditStore": "labelgate.guard.audit.store",
    "AuditBackend": "labelgate.guard.audit.backend",
    "open_store": "labelgate.guard.audit.backend",
    "PgAuditStore": "labelgate.guard.audit.pgstore",
    "BrokenRecord": "labelgate.guard.audit.chain",
    "VerifyReport": "labelgate.guard.audit.chain",
    "AuditWriter": "labelgate.guard.audit.writer",
    "AuditWriteError": "labelgate.guard.audit.writer",
    "WriterStats": "labelgate.guard.audit.writer",
    "AuditRecord": "labelgate.guard.audit.records",
    "RequestRecord": "labelgate.guard.audit.records",
    "MessageRecord": "labelgate.guard.audit.records",
    "LabelEventRecord": "labelgate.guard.audit.records",
    "DecisionRecord": "labelgate.guard.audit.records",
    "SpanRecord": "labelgate.guard.audit.records",
    "migrate": "labelgate.guard.audit.schema",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
