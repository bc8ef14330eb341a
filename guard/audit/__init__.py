"""The audit store: an append-only, hash-chained SQLite log of requests, messages, labels,
decisions and spans, written off the hot path by a batching writer thread.

Names are imported lazily so that ``guard.audit.cli`` (and ``labelgate --help``) stays cheap.
"""

from __future__ import annotations

from guard.lazy import lazy_exports

_EXPORTS = {
    "AuditStore": "guard.audit.store",
    "BrokenRecord": "guard.audit.chain",
    "VerifyReport": "guard.audit.chain",
    "AuditWriter": "guard.audit.writer",
    "AuditWriteError": "guard.audit.writer",
    "WriterStats": "guard.audit.writer",
    "AuditRecord": "guard.audit.records",
    "RequestRecord": "guard.audit.records",
    "MessageRecord": "guard.audit.records",
    "LabelEventRecord": "guard.audit.records",
    "DecisionRecord": "guard.audit.records",
    "SpanRecord": "guard.audit.records",
    "migrate": "guard.audit.schema",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
