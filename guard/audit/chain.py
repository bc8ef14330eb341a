"""The hash chain over every audited row, and its verification.

One global chain: each record gets the next ``seq``; its ``hash`` is
``sha256(prev_hash + canonical JSON of its table name and non-null columns)``, so changing,
deleting, inserting or reordering any row breaks the chain from that point on. The ``ledger``
table repeats (seq, table, row key, prev_hash, hash) in one place, so a deleted row is still
named by the ledger, and verifying is one ordered walk.

Nulls are left out of the hashed JSON on purpose: a later migration that adds a nullable
column does not invalidate the hashes of rows written before it.

A message row refers to its text in ``contents`` by SHA-256 (``guard.audit.contents``) and is
hashed with the text in place of the reference (``hashed_row``): the form every message row
had before texts were shared, so moving them changed no hash, and a changed ``contents`` row
breaks the hash of every message that uses it.

Both backends are verified by the same walk: it reads through a ``ChainSource`` (SQLite's
connection, or PostgreSQL's server-side cursors in one snapshot, ``guard.audit.pgstore``).

A pruned store (``AuditStore.prune``) starts after its latest seal: the first record kept
must link to the seal's ``cut_hash`` and carry seq ``cut_seq + 1``, and the seal itself, a
record further on, is verified like any other.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from labelgate.guard.audit.contents import REF, content_sha256, unpack
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


_JOINED = ("_text", "_packed", "_found")  # a message's contents row, joined by the walker


def hashed_row(row: Mapping[str, Any], text: str | None) -> dict[str, Any]:
    """A message row as it is hashed: ``text`` (its contents row's) in place of the
    reference. A row without a reference (stored before contents were shared) is as stored."""
    hashed = {k: v for k, v in row.items() if k != REF and k not in _JOINED}
    if row.get(REF) is not None:
        hashed["content"] = text
    return hashed


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


@dataclass(frozen=True, slots=True)
class Seal:
    """The latest prune of a store: the chain is verified from ``cut_seq + 1`` on."""

    seq: int  # the seal's own record
    created: str
    before: str
    cut_seq: int
    cut_hash: str

    def __str__(self) -> str:
        return (
            f"pruned {self.created}: records written before {self.before} "
            f"(seq <= {self.cut_seq}), hash at the cut {self.cut_hash[:12]}…"
        )


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    head_hash: str = GENESIS_HASH
    broken: BrokenRecord | None = None
    sealed: Seal | None = None  # the chain starts after this prune

    @property
    def ok(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        if self.broken is not None:
            return f"TAMPERED: {self.broken} ({self.records} records verified before it)"
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.counts.items()) if n)
        detail = f" ({counts})" if counts else ""
        since = f" since the seal at seq {self.sealed.seq} ({self.sealed})" if self.sealed else ""
        return f"OK: {self.records} records verified{detail}{since}; head {self.head_hash}"


class _Broken(Exception):
    def __init__(self, record: BrokenRecord) -> None:
        self.record = record


class ChainSource(Protocol):
    """What verifying needs of a backend: seq-ordered streams of one consistent snapshot."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """Rows of ``sql`` (``?`` placeholders), streamed."""
        ...

    def names(self) -> set[str]:
        """The tables and views."""
        ...


class SqliteChainSource:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        for values in cursor:
            yield dict(zip(names, values, strict=True))

    def names(self) -> set[str]:
        return {r[0] for r in self.conn.execute("select name from sqlite_master")}


def _one(source: ChainSource, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    return next(iter(source.query(sql, params)), None)


def _chained_tables(source: ChainSource, known: set[str]) -> list[str]:
    in_ledger = {r["table_name"] for r in source.query("select distinct table_name from ledger")}
    missing = sorted(in_ledger - known)
    if missing:
        first = _one(
            source,
            "select seq, row_key from ledger where table_name = ? order by seq limit 1",
            [missing[0]],
        )
        assert first is not None
        raise _Broken(BrokenRecord(first["seq"], missing[0], first["row_key"], "table is missing"))
    return sorted((set(CHAINED_TABLES) & known) | in_ledger)


def _latest_seal(source: ChainSource, known: set[str]) -> Seal | None:
    if "seals" not in known:
        return None
    row = _one(
        source,
        "select seq, created, before, cut_seq, cut_hash from seals "
        "order by cut_seq desc, seq desc limit 1",
    )
    return Seal(**row) if row else None


def _table_rows(source: ChainSource, table: str, known: set[str]) -> Iterator[dict[str, Any]]:
    if table == "messages" and "contents" in known:
        return source.query(
            "select m.*, c.text as _text, c.packed as _packed, c.sha256 as _found "
            f"from messages m left join contents c on c.sha256 = m.{REF} order by m.seq",
        )
    return source.query(f'select * from "{table}" order by seq')


class _Walker:
    """Walks the ledger in seq order alongside one seq-ordered cursor per table."""

    def __init__(self, source: ChainSource, expect_hash: str | None) -> None:
        self.source = source
        self.expect_hash = expect_hash
        self.anchor_seen = expect_hash is None
        self.report = VerifyReport()
        known = source.names()
        tables = _chained_tables(source, known)
        self.seal = _latest_seal(source, known)
        self.start = 0
        if self.seal is not None:
            self.start, self.report.head_hash = self.seal.cut_seq, self.seal.cut_hash
            self.report.sealed = self.seal
            self.anchor_seen = self.anchor_seen or self.seal.cut_hash == expect_hash
        self.seal_seen = self.seal is None
        self.report.counts = dict.fromkeys(tables, 0)
        self.cursors = {t: _table_rows(source, t, known) for t in tables}
        self.pending = {t: next(c, None) for t, c in self.cursors.items()}

    def run(self) -> VerifyReport:
        try:
            for entry in self.source.query("select * from ledger order by seq"):
                self._check(entry)
            self._check_leftovers()
            self._check_seal()
            self._check_anchor()
        except _Broken as broken:
            self.report.broken = broken.record
        return self.report

    def _check(self, entry: dict[str, Any]) -> None:
        seq, table, key = entry["seq"], entry["table_name"], entry["row_key"]
        expected_seq = self.start + self.report.records + 1

        def fail(problem: str) -> NoReturn:
            raise _Broken(BrokenRecord(seq, table, key, problem))

        if seq < expected_seq:
            fail(f"ledger entry inside what the seal at seq {self._seal_seq()} pruned (inserted?)")
        if seq != expected_seq:
            raise _Broken(BrokenRecord(expected_seq, None, None, "missing from the ledger"))
        if entry["prev_hash"] != self.report.head_hash:
            fail("does not link to the previous record (reordered or a record removed?)")
        row = self.pending[table]
        if row is None or row["seq"] > seq:
            fail(f"row is missing from {table} (deleted?)")
        if row["seq"] < seq:
            raise _Broken(BrokenRecord(row["seq"], table, row_key(row), "row has no ledger entry"))
        hashed = self._joined(row, fail) if table == "messages" and "_found" in row else row
        if record_hash(entry["prev_hash"], table, hashed) != row["hash"]:
            fail("row contents do not match its hash (changed?)" + self._content_note(row))
        if row["prev_hash"] != entry["prev_hash"] or row["hash"] != entry["hash"]:
            fail("row hash differs from the ledger")
        self.pending[table] = next(self.cursors[table], None)
        self.report.records += 1
        self.report.counts[table] += 1
        self.report.head_hash = entry["hash"]
        self.anchor_seen = self.anchor_seen or entry["hash"] == self.expect_hash
        if self.seal is not None and table == "seals" and seq == self.seal.seq:
            self.seal_seen = True

    def _seal_seq(self) -> int | None:
        return self.seal.seq if self.seal is not None else None

    @staticmethod
    def _joined(row: dict[str, Any], fail: Callable[[str], NoReturn]) -> dict[str, Any]:
        """The message row as hashed, its text joined from ``contents``."""
        ref = row.get(REF)
        if ref is None:
            return hashed_row(row, None)
        if row["_found"] is None:
            fail(f"its content {ref[:12]}… is missing from contents (deleted?)")
        if row.get("content") is not None:
            fail("holds a content both in the row and in contents (changed?)")
        return hashed_row(row, unpack(row["_text"], row["_packed"]))

    def _content_note(self, row: dict[str, Any]) -> str:
        """When a message's shared text was changed: which one, and how many use it."""
        ref = row.get(REF)
        if ref is None or row.get("_found") is None:
            return ""
        if content_sha256(unpack(row["_text"], row["_packed"]) or "") == ref:
            return ""
        found = _one(self.source, f"select count(*) as n from messages where {REF} = ?", [ref])
        users = found["n"] if found else 0
        return f": its content {ref[:12]}… was changed (used by {users} messages)"

    def _check_seal(self) -> None:
        """The seal verify started from is a record of the chain it starts (not one
        planted among the pruned seqs, where nothing checks it)."""
        if self.seal is not None and not self.seal_seen:
            raise _Broken(
                BrokenRecord(
                    self.seal.seq,
                    "seals",
                    None,
                    f"the seal the chain starts from (cut at seq {self.seal.cut_seq}) is not "
                    "a record of it (inserted?)",
                )
            )

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


def verify_chain(
    source: ChainSource | sqlite3.Connection, expect_hash: str | None = None
) -> VerifyReport:
    """Check every link and every row; stop at the first broken record.

    A chain can be rewritten from some point on by someone who recomputes every later hash;
    pass ``expect_hash`` (a head printed by an earlier verify and kept elsewhere) to prove
    the chain still contains it.
    """
    if isinstance(source, sqlite3.Connection):
        source = SqliteChainSource(source)
    try:
        walker = _Walker(source, expect_hash)
    except _Broken as broken:
        return VerifyReport(broken=broken.record)
    return walker.run()
