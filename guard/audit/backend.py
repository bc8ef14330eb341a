"""The seam between the audit writer/readers and where the trail is kept.

Two backends implement ``AuditBackend``: ``AuditStore`` (one SQLite file, the embedded
default) and ``PgAuditStore`` (a PostgreSQL database shared by several replicas,
``guard.audit.pgstore``). ``open_store`` picks one from a *target*: a PostgreSQL URL
(``postgresql://...``, ``postgres://...``) or a file path. Everything above the seam (the
``AuditWriter`` and its journal, ``StoreProcess``, ``labelgate audit``, ``labelgate trace``,
``labelgate ui``) works on either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from labelgate.guard.audit.records import AuditRecord, Submitted

if TYPE_CHECKING:
    from labelgate.guard.audit.chain import VerifyReport
    from labelgate.guard.audit.sqlsource import SqlSource
    from labelgate.guard.audit.store import PruneReport

Row = dict[str, Any]
DSN_ENV = "LABELGATE_DSN"  # a PostgreSQL URL for the audit commands (``--dsn``)
_DSN = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def is_dsn(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return isinstance(target, str) and bool(_DSN.match(target))


@runtime_checkable
class AuditBackend(Protocol):
    """What the writer, the CLI and the readers need of an audit store."""

    readonly: bool

    @property
    def target(self) -> str:
        """What ``open_store`` opens again (a path or a URL; a child process does)."""
        ...

    @property
    def shown(self) -> str:
        """The target as shown to a person (no password)."""
        ...

    def write_batch(self, records: Sequence[Submitted]) -> int:
        """Append records, chained in the given order, in one transaction; the count.
        A refused record: ``sqlite3.IntegrityError`` or ``RecordRejected``; the store out of
        reach: ``StoreUnavailable`` (nothing committed)."""
        ...

    def write_fields(self, records: Sequence[tuple[type[AuditRecord], Mapping[str, Any]]]) -> int:
        """``write_batch`` for records given as (record class, field values)."""
        ...

    def head(self) -> tuple[int, str]:
        """The last (seq, hash) of the chain."""
        ...

    def seal(self) -> Row | None:
        """The latest prune's seal row, or None."""
        ...

    def prune(self, before: datetime, *, by: str | None = None) -> PruneReport:
        """Delete the records written before ``before``, sealing the chain at the cut."""
        ...

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        ...

    def verify(self, expect_hash: str | None = None) -> VerifyReport:
        """Walk the whole chain (one snapshot of it); stop at the first broken record."""
        ...

    def reader_source(self) -> SqlSource:
        """A read-only query source for ``AuditReader``: a connection of its own, which
        outlives this store's (the reader closes it)."""
        ...

    def size_bytes(self) -> int:
        """The size of the store on disk."""
        ...

    def vacuum(self) -> None:
        """Give the space freed by ``prune`` back (SQLite) or up for reuse (PostgreSQL)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_store(target: str | Path, *, readonly: bool = False) -> AuditBackend:
    """The store ``target`` names: a PostgreSQL URL or a SQLite file path. A read-only open
    of a SQLite file that does not exist raises ``FileNotFoundError``; a PostgreSQL server out
    of reach raises ``StoreUnavailable`` (fail closed, with the reason)."""
    if is_dsn(target):
        from labelgate.guard.audit.pgstore import PgAuditStore

        return PgAuditStore(str(target), readonly=readonly)
    from labelgate.guard.audit.store import AuditStore

    return AuditStore(target, readonly=readonly)
