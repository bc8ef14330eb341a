"""The audit store: an append-only, hash-chained SQLite log of requests, messages, labels,
decisions and spans, written off the hot path by a batching writer thread.

Names are imported lazily so that ``guard.audit.cli`` (and ``labelgate --help``) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.audit' has no attribute {name!r}")
    return getattr(import_module(module), name)
