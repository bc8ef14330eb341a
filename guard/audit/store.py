"""The synchronous audit store: one SQLite file, opened in WAL mode, migrated on open.

``write_batch`` appends records in ONE transaction, so a crash (even ``kill -9``) leaves either
the whole batch or none of it. An ``AuditStore`` is not for concurrent use from several
threads: the ``AuditWriter`` owns one on its thread; readers open their own.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from labelgate.guard.audit.chain import VerifyReport, record_hash, verify_chain
from labelgate.guard.audit.records import AuditRecord, Submitted, built
from labelgate.guard.audit.schema import CHAINED_TABLES, GENESIS_HASH, immediate, migrate

Row = dict[str, Any]


def _connect(path: Path, readonly: bool, timeout: float) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise FileNotFoundError(f"no audit database at {path}")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False: a store may be created on one thread and handed to a writer.
    return sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)


def _insert_rows(conn: sqlite3.Connection, table: str, rows: list[Row]) -> None:
    # Plain executemany rather than sqlite-utils' insert_all: these rows are already typed
    # and share one set of columns, and insert_all's per-value checks cost ~2/3 of a batch.
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f'insert into "{table}" ({names}) values ({marks})'
    conn.executemany(sql, [[row[c] for c in columns] for row in rows])


class AuditStore:
    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.db = Database(_connect(self.path, readonly, timeout))
        if not readonly:
            self.db.enable_wal()
            # NORMAL in WAL mode: a committed batch survives a process crash; only a power
            # loss may drop the last transactions, never corrupt the file.
            self.db.execute("PRAGMA synchronous=NORMAL")
            migrate(self.db)

    # ------------------------------------------------------------------ writing
    def head(self) -> tuple[int, str]:
        """The last (seq, hash) of the chain."""
        row = self.db.execute("select seq, hash from ledger order by seq desc limit 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def write_batch(self, records: Sequence[Submitted]) -> int:
        """Append records, chained in the given order, in one transaction; return the count.
        Deferred records are built first (``DeferredRecords``)."""
        return self.write_fields([(type(r), r.__dict__) for r in built(records)])

    def write_fields(self, records: Sequence[tuple[type[AuditRecord], Mapping[str, Any]]]) -> int:
        """``write_batch`` for records given as (record class, field values)."""
        if not records:
            return 0
        created = datetime.now(UTC).isoformat()
        by_table: dict[str, list[Row]] = defaultdict(list)
        ledger: list[Row] = []
        with immediate(self.db):
            # The head is read under the write lock, so other writers cannot fork the chain.
            seq, prev = self.head()
            for record, fields in records:
                seq += 1
                row = record.row_of(fields)
                row["seq"] = seq
                digest = record_hash(prev, record.table, row)
                row["prev_hash"], row["hash"] = prev, digest
                by_table[record.table].append(row)
                ledger.append(
                    {
                        "seq": seq,
                        "table_name": record.table,
                        "row_key": record.key_of(fields),
                        "prev_hash": prev,
                        "hash": digest,
                        "created": created,
                    }
                )
                prev = digest
            for table, rows in by_table.items():
                _insert_rows(self.db.conn, table, rows)
            _insert_rows(self.db.conn, "ledger", ledger)
        return len(records)

    # ------------------------------------------------------------------ reading
    def get_request(self, request_id: str) -> Row | None:
        rows = list(self.db.query("select * from requests where id = ?", [request_id]))
        return rows[0] if rows else None

    def messages_for(self, request_id: str) -> list[Row]:
        sql = "select * from messages where request_id = ? order by position"
        return list(self.db.query(sql, [request_id]))

    def search_messages(self, query: str, limit: int = 20, *, raw: bool = False) -> list[Row]:
        """Full-text search over message content, best match first.

        Words are matched literally unless ``raw``, which passes FTS5 query syntax through.
        """
        table = self.db.table("messages")
        return list(table.search(query, limit=limit, quote=not raw))

    def list_decisions(
        self, *, request_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[Row]:
        where, params = [], []
        if request_id is not None:
            where.append("request_id = ?")
            params.append(request_id)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        clause = f"where {' and '.join(where)}" if where else ""
        sql = f"select * from decisions {clause} order by seq desc limit ?"
        return list(self.db.query(sql, [*params, limit]))

    def spans_for(self, trace_id: str) -> list[Row]:
        sql = "select * from spans where trace_id = ? order by start_ns"
        return list(self.db.query(sql, [trace_id]))

    def counts(self) -> dict[str, int]:
        names = [*CHAINED_TABLES, "ledger"]
        return {t: self.db[t].count for t in names if self.db[t].exists()}

    def verify(self, expect_hash: str | None = None) -> VerifyReport:
        return verify_chain(self.db.conn, expect_hash)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
