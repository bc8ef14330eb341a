"""The synchronous audit store: one SQLite file, opened in WAL mode, migrated on open.

``write_batch`` appends records in ONE transaction, so a crash (even ``kill -9``) leaves either
the whole batch or none of it. An ``AuditStore`` is not for concurrent use from several
threads: the ``AuditWriter`` owns one on its thread; readers open their own.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from labelgate.guard.audit.chain import VerifyReport, record_hash, verify_chain
from labelgate.guard.audit.contents import REF, VIEW, content_row, content_sha256, message_content
from labelgate.guard.audit.records import AuditRecord, SealRecord, Submitted, built
from labelgate.guard.audit.schema import CHAINED_TABLES, GENESIS_HASH, immediate, migrate
from labelgate.guard.audit.sqlsource import SqliteSource

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


def _with_text(row: Row) -> Row:
    """A ``message_texts`` row with a packed text unpacked into ``content``."""
    packed = row.pop("content_packed", None)
    if row.get("content") is None and packed is not None:
        row["content"] = message_content({"content_packed": packed})
    return row


@dataclass(slots=True)
class ChainedRows:
    """A batch of records as rows, chained: per table, the ledger's, and the texts of its
    messages (for ``contents``)."""

    tables: dict[str, list[Row]]
    ledger: list[Row]
    texts: dict[str, str]
    head: tuple[int, str]  # the last (seq, hash)


def chained_rows(
    records: Sequence[tuple[type[AuditRecord], Mapping[str, Any]]],
    seqs: Iterable[int],
    prev: str,
) -> ChainedRows:
    """Give ``records`` the ``seqs`` in order and chain them after ``prev`` (the same for
    every backend: verify recomputes these hashes from the stored rows).

    A message's text goes to ``contents`` (once per distinct text) and its row refers to it by
    SHA-256; its hash is taken with the text in place, as verify recomputes it."""
    created = datetime.now(UTC).isoformat()
    by_table: dict[str, list[Row]] = defaultdict(list)
    ledger: list[Row] = []
    texts: dict[str, str] = {}
    seq = 0
    for (record, fields), seq in zip(records, seqs, strict=True):
        row = record.row_of(fields)
        row["seq"] = seq
        digest = record_hash(prev, record.table, row)
        row["prev_hash"], row["hash"] = prev, digest
        if record.table == "messages":
            text = row["content"]
            row["content"] = None
            row[REF] = None if text is None else content_sha256(text)
            if text is not None:
                texts[row[REF]] = text
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
    return ChainedRows(dict(by_table), ledger, texts, (seq, prev))


@dataclass(slots=True)
class PruneReport:
    """What ``AuditStore.prune`` did: nothing (``pruned`` false), or the records up to
    ``cut_seq`` deleted, per table (``contents``: texts no message uses any more)."""

    before: str
    cut_seq: int = 0
    cut_hash: str | None = None
    deleted: dict[str, int] = field(default_factory=dict)
    seal_id: str | None = None

    @property
    def pruned(self) -> bool:
        return self.seal_id is not None

    @property
    def records(self) -> int:
        return sum(n for t, n in self.deleted.items() if t != "contents")

    def summary(self) -> str:
        if not self.pruned:
            return f"nothing written before {self.before}: nothing pruned"
        tables = ", ".join(f"{t} {n}" for t, n in sorted(self.deleted.items()) if t != "contents")
        return (
            f"pruned {self.records} records written before {self.before} ({tables}) and "
            f"{self.deleted.get('contents', 0)} contents no longer used; sealed at seq "
            f"{self.cut_seq}, hash at the cut {self.cut_hash}"
        )


class AuditStore:
    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = timeout
        self.db = Database(_connect(self.path, readonly, timeout))
        if not readonly:
            self.db.enable_wal()
            # NORMAL in WAL mode: a committed batch survives a process crash; only a power
            # loss may drop the last transactions, never corrupt the file.
            self.db.execute("PRAGMA synchronous=NORMAL")
            migrate(self.db)

    @property
    def target(self) -> str:
        return str(self.path)

    @property
    def shown(self) -> str:
        return str(self.path)

    def reader_source(self) -> SqliteSource:
        """A read-only connection of its own, for ``AuditReader``."""
        return SqliteSource(Database(_connect(self.path, True, self.timeout)))

    def size_bytes(self) -> int:
        return self.path.stat().st_size

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
        with immediate(self.db):
            # The head is read under the write lock, so other writers cannot fork the chain.
            self._append(records, *self.head())
        return len(records)

    def _append(
        self,
        records: Sequence[tuple[type[AuditRecord], Mapping[str, Any]]],
        seq: int,
        prev: str,
    ) -> None:
        """Chain ``records`` after (seq, prev) and insert them, inside the caller's
        transaction."""
        chained = chained_rows(records, range(seq + 1, seq + len(records) + 1), prev)
        if chained.texts:
            self._store_contents(chained.texts)
        for table, rows in chained.tables.items():
            _insert_rows(self.db.conn, table, rows)
        _insert_rows(self.db.conn, "ledger", chained.ledger)

    def _store_contents(self, texts: dict[str, str]) -> None:
        """Insert the texts not stored yet (looked up first: a long text already stored is
        not handed to SQLite again)."""
        conn = self.db.conn
        keys = list(texts)
        stored: set[str] = set()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join("?" for _ in part)
            sql = f"select sha256 from contents where sha256 in ({marks})"
            stored.update(r[0] for r in conn.execute(sql, part))
        new = [content_row(texts[k], k) for k in keys if k not in stored]
        if new:
            _insert_rows(conn, "contents", new)

    # ------------------------------------------------------------------ retention
    def seal(self) -> Row | None:
        """The latest seal (the prune that verify starts after), or None if never pruned."""
        if not self.db["seals"].exists():
            return None
        rows = list(self.db.query("select * from seals order by cut_seq desc, seq desc limit 1"))
        return rows[0] if rows else None

    def prune(self, before: datetime, *, by: str | None = None) -> PruneReport:
        """Delete the records written before ``before`` (the oldest part of the chain, up to
        the first record written at or after it), and the contents no other message uses, in
        one transaction that appends a ``SealRecord`` at the head: the hash at the cut, what
        was deleted and when. ``verify`` then checks the chain from the cut. Nothing to delete
        (or only the last seal): nothing written."""
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        cutoff = before.astimezone(UTC).isoformat()
        conn = self.db.conn
        with immediate(self.db):
            head_seq, head_hash = self.head()
            sealed = self.seal()
            floor = int(sealed["cut_seq"]) if sealed else 0
            (first_kept,) = conn.execute(
                "select min(seq) from ledger where seq > ? and created >= ?", [floor, cutoff]
            ).fetchone()
            cut = head_seq if first_kept is None else int(first_kept) - 1
            deleted = {
                table: count
                for table, count in conn.execute(
                    "select table_name, count(*) from ledger where seq <= ? "
                    "group by table_name order by table_name",
                    [cut],
                )
            }
            if cut <= floor or set(deleted) <= {"seals"}:  # only an earlier seal: keep it
                return PruneReport(before=cutoff)
            (cut_hash,) = conn.execute("select hash from ledger where seq = ?", [cut]).fetchone()
            gone = [
                (sha,)
                for (sha,) in conn.execute(
                    f"select distinct {REF} from messages where seq <= ? and {REF} is not null",
                    [cut],
                )
            ]
            for table in sorted(set(deleted) | {"messages"}):
                if self.db[table].exists():
                    conn.execute(f'delete from "{table}" where seq <= ?', [cut])
            conn.execute("delete from ledger where seq <= ?", [cut])
            unused = conn.executemany(
                f"delete from contents where sha256 = ? and not exists "
                f"(select 1 from messages m where m.{REF} = contents.sha256)",
                gone,
            ).rowcount
            deleted["contents"] = max(unused, 0)
            seal = SealRecord(
                before=cutoff,
                cut_seq=cut,
                cut_hash=cut_hash,
                previous_cut_seq=floor or None,
                deleted=deleted,
                by=by,
            )
            self._append([(SealRecord, seal.__dict__)], head_seq, head_hash)
        return PruneReport(
            before=cutoff, cut_seq=cut, cut_hash=cut_hash, deleted=deleted, seal_id=seal.id
        )

    def vacuum(self) -> None:
        """Give the pages freed by ``prune`` back to the file system (rewrites the file)."""
        self.db.execute("VACUUM")

    # ------------------------------------------------------------------ reading
    def get_request(self, request_id: str) -> Row | None:
        rows = list(self.db.query("select * from requests where id = ?", [request_id]))
        return rows[0] if rows else None

    def messages_for(self, request_id: str) -> list[Row]:
        """The messages of a request, in order, each with its text in ``content``."""
        sql = f"select * from {self._messages()} where request_id = ? order by position"
        return [_with_text(row) for row in self.db.query(sql, [request_id])]

    def _messages(self) -> str:
        return VIEW if self.db[VIEW].exists() else "messages"  # a store not yet migrated

    def search_messages(self, query: str, limit: int = 20, *, raw: bool = False) -> list[Row]:
        """Full-text search over message content, best match first (a text several messages
        share: each of them).

        Words are matched literally unless ``raw``, which passes FTS5 query syntax through.
        """
        if not self.db["contents_fts"].exists():  # a store not yet migrated
            table = self.db.table("messages")
            return list(table.search(query, limit=limit, quote=not raw))
        sql = (
            f"select m.* from contents_fts f join contents c on c.rowid = f.rowid "
            f"join {VIEW} m on m.{REF} = c.sha256 where contents_fts match ? "
            "order by f.rank, m.seq limit ?"
        )
        match = query if raw else self.db.quote_fts(query)
        return [_with_text(row) for row in self.db.query(sql, [match, limit])]

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
        names = [*CHAINED_TABLES, "ledger", "contents"]
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
