"""The hash chain over every audited row, and its verification.

One global chain: each record gets the next ``seq``; its ``hash`` is
``sha256(prev_hash + canonical JSON of its table name and non-null columns)``, so changing,
deleting, inserting or reordering any row breaks the chain from that point on. The ``ledger``
table repeats (seq, table, row key, prev_hash, hash) in one place, so a deleted row is still
named by the ledger, and verifying is one ordered walk.

Nulls are left out of the hashed JSON on purpose: a later migration that adds a nullable
column does not invalidate the hashes of rows written before it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from labelgate.guard.audit.records import dumps, stdlib_dumps
from labelgate.guard.audit.schema import CHAINED_TABLES, GENESIS_HASH

_NOT_HASHED = frozenset({"hash", "prev_hash"})


def record_hash(prev_hash: str, table: str, row: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in row.items() if k not in _NOT_HASHED and v is not None}
    fields["_table"] = table
    # A row's values are flat (JSON fields are already text): only a float can come out of
    # orjson differently from the standard library, which hashed every row written before.
    has_float = any(isinstance(v, float) for v in fields.values())
    text = stdlib_dumps(fields) if has_float else dumps(fields)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def row_key(row: Mapping[str, Any]) -> str:
    if row.get("id") is not None:
        return str(row["id"])
    return f"{row.get('trace_id')}:{row.get('span_id')}"


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    seq: int
    table: str | None
    row_key: str | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.table} {self.row_key}" if self.table else "ledger"
        return f"seq {self.seq} ({where}): {self.problem}"


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    head_hash: str = GENESIS_HASH
    broken: BrokenRecord | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        if self.broken is not None:
            return f"TAMPERED: {self.broken} ({self.records} records verified before it)"
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.counts.items()) if n)
        detail = f" ({counts})" if counts else ""
        return f"OK: {self.records} records verified{detail}; head {self.head_hash}"


class _Broken(Exception):
    def __init__(self, record: BrokenRecord) -> None:
        self.record = record


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[dict[str, Any]]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    for values in cursor:
        yield dict(zip(names, values, strict=True))


def _chained_tables(conn: sqlite3.Connection) -> list[str]:
    known = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    in_ledger = {r[0] for r in conn.execute("select distinct table_name from ledger")}
    missing = sorted(in_ledger - known)
    if missing:
        first = conn.execute(
            "select seq, row_key from ledger where table_name = ? order by seq limit 1",
            [missing[0]],
        ).fetchone()
        raise _Broken(BrokenRecord(first[0], missing[0], first[1], "table is missing"))
    return sorted((set(CHAINED_TABLES) & known) | in_ledger)


class _Walker:
    """Walks the ledger in seq order alongside one seq-ordered cursor per table."""

    def __init__(self, conn: sqlite3.Connection, expect_hash: str | None) -> None:
        self.conn = conn
        self.expect_hash = expect_hash
        self.anchor_seen = expect_hash is None
        self.report = VerifyReport()
        tables = _chained_tables(conn)
        self.report.counts = dict.fromkeys(tables, 0)
        self.cursors = {t: _rows(conn, f'select * from "{t}" order by seq') for t in tables}
        self.pending = {t: next(c, None) for t, c in self.cursors.items()}

    def run(self) -> VerifyReport:
        try:
            for entry in _rows(self.conn, "select * from ledger order by seq"):
                self._check(entry)
            self._check_leftovers()
            self._check_anchor()
        except _Broken as broken:
            self.report.broken = broken.record
        return self.report

    def _check(self, entry: dict[str, Any]) -> None:
        seq, table, key = entry["seq"], entry["table_name"], entry["row_key"]
        expected_seq = self.report.records + 1

        def fail(problem: str) -> NoReturn:
            raise _Broken(BrokenRecord(seq, table, key, problem))

        if seq != expected_seq:
            raise _Broken(BrokenRecord(expected_seq, None, None, "missing from the ledger"))
        if entry["prev_hash"] != self.report.head_hash:
            fail("does not link to the previous record (reordered or a record removed?)")
        row = self.pending[table]
        if row is None or row["seq"] > seq:
            fail(f"row is missing from {table} (deleted?)")
        if row["seq"] < seq:
            raise _Broken(BrokenRecord(row["seq"], table, row_key(row), "row has no ledger entry"))
        if record_hash(entry["prev_hash"], table, row) != row["hash"]:
            fail("row contents do not match its hash (changed?)")
        if row["prev_hash"] != entry["prev_hash"] or row["hash"] != entry["hash"]:
            fail("row hash differs from the ledger")
        self.pending[table] = next(self.cursors[table], None)
        self.report.records += 1
        self.report.counts[table] += 1
        self.report.head_hash = entry["hash"]
        self.anchor_seen = self.anchor_seen or entry["hash"] == self.expect_hash

    def _check_leftovers(self) -> None:
        for table, row in self.pending.items():
            if row is not None:
                raise _Broken(
                    BrokenRecord(row["seq"], table, row_key(row), "row has no ledger entry")
                )

    def _check_anchor(self) -> None:
        if not self.anchor_seen:
            raise _Broken(
                BrokenRecord(
                    self.report.records,
                    None,
                    None,
                    f"expected hash {self.expect_hash} is not in the chain (rewritten?)",
                )
            )


def verify_chain(conn: sqlite3.Connection, expect_hash: str | None = None) -> VerifyReport:
    """Check every link and every row; stop at the first broken record.

    A chain can be rewritten from some point on by someone who recomputes every later hash;
    pass ``expect_hash`` (a head printed by an earlier verify and kept elsewhere) to prove
    the chain still contains it.
    """
    try:
        walker = _Walker(conn, expect_hash)
    except _Broken as broken:
        return VerifyReport(broken=broken.record)
    return walker.run()
