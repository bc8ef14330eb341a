"""The audit store on PostgreSQL (``state.backend: postgres``): one trail for every replica.

The same tables, rows and hash chain as the SQLite store (``pgsql/0001_audit.sql``), written
with psycopg 3. Several replicas append to ONE chain: each batch is one transaction that first
takes a transaction-level advisory lock (``CHAIN_LOCK``), then reads the head, appends, and
commits, which releases the lock. A batch is whole or absent, as in SQLite, and the chain has
one head, so ``labelgate audit verify --expect HEAD`` works as before. (Per-replica chains
anchored in one table were measured against this in ``tests/bench/bench_pg_audit.py``; the
figures and the reasons for one chain are in docs/deploy.md and docs/performance.md.)

Errors: a record PostgreSQL refuses for good (a duplicate key: already stored, say by a
journal replay; a value it cannot hold) raises ``RecordRejected``; a lost or refused
connection raises ``StoreUnavailable`` and the next call connects again, so the writer can
hold its batch and retry until the server is back (``AuditWriter``).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from types import TracebackType
from typing import Any, NoReturn, Self

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from labelgate.guard import postgres
from labelgate.guard.audit.chain import VerifyReport, verify_chain
from labelgate.guard.audit.contents import REF, VIEW, content_row, message_content
from labelgate.guard.audit.errors import RecordRejected, StoreUnavailable
from labelgate.guard.audit.records import AuditRecord, SealRecord, Submitted, built
from labelgate.guard.audit.schema import CHAINED_TABLES, GENESIS_HASH
from labelgate.guard.audit.sqlsource import Dialect, Params, PgDialect, pg_placeholders
from labelgate.guard.audit.store import ChainedRows, PruneReport, chained_rows
from labelgate.guard.postgres import CONNECT_TIMEOUT, redacted, unavailable
from labelgate.guard.state import StateUnavailable

Row = dict[str, Any]
Conn = psycopg.Connection[Any]
Fields = Sequence[tuple[type[AuditRecord], Mapping[str, Any]]]  # records as the writer sends

# The audit chain's advisory lock ("lblaudit" as a big-endian integer): held by the writer
# of a batch from its read of the head to its commit.
CHAIN_LOCK = int.from_bytes(b"lblaudit", "big")
COMPONENT = "audit"  # its row in labelgate_schema (guard.postgres)


def _unavailable(dsn: str, exc: BaseException, doing: str = "write the audit trail") -> NoReturn:
    raise StoreUnavailable(str(unavailable(dsn, exc, doing))) from exc


def connect(dsn: str, *, timeout: float = CONNECT_TIMEOUT) -> Conn:
    """An autocommit connection, or ``StoreUnavailable`` saying where and why not."""
    try:
        return postgres.connect(dsn, connect_timeout=max(1, int(timeout)))
    except StateUnavailable as exc:
        raise StoreUnavailable(str(exc)) from None


def scalar(conn: Conn, query: str | bytes, params: Sequence[Any] = ()) -> Any:
    """The first column of the one row ``query`` gives (an aggregate's)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query!r}")
    return row[0]


# --------------------------------------------------------------------------- migrations


def migrations() -> list[str]:
    """The SQL of ``pgsql/NNNN_name.sql``, in order: migration N is the Nth file."""
    folder = resources.files("labelgate.guard.audit").joinpath("pgsql")
    files = sorted((e.name, e) for e in folder.iterdir() if e.name.endswith(".sql"))
    return [entry.read_text("utf-8") for _, entry in files]


def schema_version(conn: Conn) -> int:
    """The audit schema's version in ``labelgate_schema`` (0: not an audit database)."""
    if not scalar(conn, "select to_regclass('labelgate_schema') is not null"):
        return 0
    row = conn.execute(
        "select version from labelgate_schema where component = %s", [COMPONENT]
    ).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- reading


def _names(conn: Conn) -> set[str]:
    rows = conn.execute(
        "select table_name from information_schema.tables where table_schema = current_schema()"
    ).fetchall()
    return {r[0] for r in rows}


class PgSource:
    """``SqlSource`` over PostgreSQL: each query in its own read-only transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.dialect: Dialect = PgDialect()

    def rows(self, sql_text: str, params: Params = ()) -> list[Row]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(pg_placeholders(sql_text).encode(), params)
            return cur.fetchall()

    def names(self) -> set[str]:
        return _names(self.conn)

    def close(self) -> None:
        self.conn.close()


class PgChainSource:
    """``ChainSource`` over PostgreSQL: server-side cursors in the caller's transaction (a
    REPEATABLE READ snapshot, so replicas writing meanwhile do not show up half-way)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._n = 0

    def query(self, sql_text: str, params: Sequence[Any] = ()) -> Iterator[Row]:
        self._n += 1
        with self.conn.cursor(name=f"verify_{self._n}", row_factory=dict_row) as cur:
            cur.itersize = 2000
            cur.execute(pg_placeholders(sql_text).encode(), params)
            yield from cur

    def names(self) -> set[str]:
        return _names(self.conn)


# --------------------------------------------------------------------------- the store


def _pg_content_row(text: str, sha256: str) -> Row:
    row = content_row(text, sha256)
    if row["text"] is not None and "\x00" in row["text"]:  # PostgreSQL text holds no NUL
        data = text.encode()
        row.update(text=None, packed=zlib.compress(data, 6))
    return row


class PgAuditStore:
    """``AuditBackend`` on a PostgreSQL database (``dsn``: a ``postgresql://`` URL).

    Migrates on open unless ``readonly`` (then the schema must be there). Not for concurrent
    use from several threads: the writer owns one, readers open their own."""

    def __init__(
        self, dsn: str, *, readonly: bool = False, timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.dsn = dsn
        self.readonly = readonly
        self.timeout = timeout
        self._conn: Conn | None = None
        conn = self.conn()
        if readonly:
            if schema_version(conn) == 0:
                conn.close()
                raise FileNotFoundError(f"no labelgate audit store in {self.shown}")
        else:
            try:
                postgres.migrate(conn, COMPONENT, migrations())
            except psycopg.OperationalError as exc:
                _unavailable(dsn, exc, "migrate the audit schema")

    @property
    def target(self) -> str:
        return self.dsn

    @property
    def shown(self) -> str:
        return redacted(self.dsn)

    def conn(self) -> Conn:
        """The open connection, connecting again after a lost one."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = connect(self.dsn, timeout=self.timeout)
            if self.readonly:
                self._conn.execute("set default_transaction_read_only = on")
        return self._conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's errors as the writer's: refused for good, or out of reach for now."""
        try:
            yield
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            raise RecordRejected(str(exc).strip()) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            _unavailable(self.dsn, exc)

    # ------------------------------------------------------------------ writing
    def head(self) -> tuple[int, str]:
        with self._errors():
            return self._head(self.conn())

    @staticmethod
    def _head(conn: Conn) -> tuple[int, str]:
        row = conn.execute("select seq, hash from ledger order by seq desc limit 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def write_batch(self, records: Sequence[Submitted]) -> int:
        return self.write_fields([(type(r), r.__dict__) for r in built(records)])

    def write_fields(self, records: Fields) -> int:
        if not records:
            return 0
        with self._errors():
            conn = self.conn()
            try:
                with conn.transaction():
                    first, prev = self._chain_start(conn, len(records))
                    chained = chained_rows(records, range(first, first + len(records)), prev)
                    self._insert(conn, chained)
            except psycopg.errors.UniqueViolation:
                if self._all_stored(conn, records):
                    return 0
                raise
        return len(records)

    @staticmethod
    def _all_stored(conn: Conn, records: Fields) -> bool:
        """Whether every record of a refused batch is in the chain already: a batch written
        again after a connection lost before its commit was acknowledged (it had committed),
        or a journal replayed. Then nothing is refused (and nothing is written)."""
        keys = {(record.table, record.key_of(fields)) for record, fields in records}
        tables, row_keys = zip(*keys, strict=True)
        found = scalar(
            conn,
            "select count(distinct (table_name, row_key)) from ledger "
            "where (table_name, row_key) in (select * from unnest(%s::text[], %s::text[]))",
            [list(tables), list(row_keys)],
        )
        return int(found) == len(keys)

    def _chain_start(self, conn: Conn, count: int) -> tuple[int, str]:
        """The first seq of a batch of ``count`` and the hash it links to, read under the
        chain's lock (held until the transaction ends: no other writer can fork the chain)."""
        conn.execute("select pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
        seq, prev = self._head(conn)
        return seq + 1, prev

    def _insert(self, conn: Conn, chained: ChainedRows) -> None:
        with conn.cursor() as cur:
            if chained.texts:
                rows = [_pg_content_row(t, k) for k, t in chained.texts.items()]
                _insert_rows(cur, "contents", rows, on_conflict="(sha256) do nothing")
            for table, rows in chained.tables.items():
                _insert_rows(cur, table, rows)
            _insert_rows(cur, "ledger", chained.ledger)

    # ------------------------------------------------------------------ retention
    def seal(self) -> Row | None:
        with self._errors():
            return self._seal(self.conn())

    @staticmethod
    def _seal(conn: Conn) -> Row | None:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute("select * from seals order by cut_seq desc, seq desc limit 1")
            return cur.fetchone()

    def prune(self, before: datetime, *, by: str | None = None) -> PruneReport:
        """As ``AuditStore.prune``: delete the records written before ``before`` and the
        contents no message uses any more, and append a ``SealRecord``, in one transaction
        under the chain's lock."""
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        cutoff = before.astimezone(UTC).isoformat()
        with self._errors():
            conn = self.conn()
            with conn.transaction():
                return self._prune(conn, cutoff, by)

    def _prune(self, conn: Conn, cutoff: str, by: str | None) -> PruneReport:
        next_seq, head_hash = self._chain_start(conn, 1)  # the seal goes at the head
        sealed = self._seal(conn)
        floor = int(sealed["cut_seq"]) if sealed else 0
        first_kept = scalar(
            conn, "select min(seq) from ledger where seq > %s and created >= %s", [floor, cutoff]
        )
        cut = next_seq - 1 if first_kept is None else int(first_kept) - 1
        deleted = {
            str(table): int(count)
            for table, count in conn.execute(
                "select table_name, count(*) from ledger where seq <= %s "
                "group by table_name order by table_name",
                [cut],
            )
        }
        if cut <= floor or set(deleted) <= {"seals"}:  # only an earlier seal: keep it
            return PruneReport(before=cutoff)
        cut_hash = str(scalar(conn, "select hash from ledger where seq = %s", [cut]))
        gone = conn.execute(
            f"select distinct {REF} from messages where seq <= %s and {REF} is not null", [cut]
        ).fetchall()
        for table in sorted(set(deleted) | {"messages"}):
            delete = sql.SQL("delete from {} where seq <= %s").format(sql.Identifier(table))
            conn.execute(delete, [cut])
        conn.execute("delete from ledger where seq <= %s", [cut])
        with conn.cursor() as cur:
            cur.executemany(
                f"delete from contents where sha256 = %s and not exists "
                f"(select 1 from messages m where m.{REF} = contents.sha256)",
                gone,
            )
            unused = cur.rowcount
        deleted["contents"] = max(unused, 0)
        seal = SealRecord(
            before=cutoff,
            cut_seq=cut,
            cut_hash=cut_hash,
            previous_cut_seq=floor or None,
            deleted=deleted,
            by=by,
        )
        self._insert(conn, chained_rows([(SealRecord, seal.__dict__)], [next_seq], head_hash))
        return PruneReport(
            before=cutoff, cut_seq=cut, cut_hash=cut_hash, deleted=deleted, seal_id=seal.id
        )

    # ------------------------------------------------------------------ reading
    def verify(self, expect_hash: str | None = None) -> VerifyReport:
        """The chain as of one snapshot (replicas may go on writing meanwhile)."""
        with self._errors():
            conn = self.conn()
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read, read only")
                return verify_chain(PgChainSource(conn), expect_hash)

    def counts(self) -> dict[str, int]:
        names = [*CHAINED_TABLES, "ledger", "contents"]
        with self._errors():
            conn = self.conn()
            known = _names(conn)
            return {
                t: int(scalar(conn, f'select count(*) from "{t}"')) for t in names if t in known
            }

    def size_bytes(self) -> int:
        """The database's size on disk (what ``labelgate audit stats`` shows)."""
        with self._errors():
            return int(scalar(self.conn(), "select pg_database_size(current_database())"))

    def vacuum(self) -> None:
        """Plain VACUUM of the audit tables: the space pruned rows held is reused (VACUUM
        FULL, which gives it back to the file system, locks the tables: an operator's call)."""
        with self._errors():
            conn = self.conn()
            for table in [*CHAINED_TABLES, "ledger", "contents"]:
                conn.execute(sql.SQL("vacuum {}").format(sql.Identifier(table)))

    def _query(self, sql_text: str, params: Sequence[Any]) -> list[Row]:
        with self._errors(), self.conn().cursor(row_factory=dict_row) as cur:
            cur.execute(sql_text.encode(), params)
            return cur.fetchall()

    def get_request(self, request_id: str) -> Row | None:
        rows = self._query("select * from requests where id = %s", [request_id])
        return rows[0] if rows else None

    def messages_for(self, request_id: str) -> list[Row]:
        """The messages of a request, in order, each with its text in ``content``."""
        rows = self._query(
            f"select * from {VIEW} where request_id = %s order by position", [request_id]
        )
        for row in rows:
            row["content"] = message_content(row)
            row.pop("content_packed", None)
        return rows

    def list_decisions(
        self, *, request_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[Row]:
        where, params = ["true"], []
        if request_id is not None:
            where.append("request_id = %s")
            params.append(request_id)
        if action is not None:
            where.append("action = %s")
            params.append(action)
        sql_text = f"select * from decisions where {' and '.join(where)} order by seq desc limit %s"
        return self._query(sql_text, [*params, limit])

    def spans_for(self, trace_id: str) -> list[Row]:
        return self._query("select * from spans where trace_id = %s order by start_ns", [trace_id])

    def reader_source(self) -> PgSource:
        """This store's connection, read-only from now on, handed to ``AuditReader`` (which
        closes it); the store connects again if it is used after this."""
        with self._errors():
            conn = self.conn()
            conn.execute("set default_transaction_read_only = on")
        self._conn = None
        return PgSource(conn)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _insert_rows(
    cur: psycopg.Cursor[Any], table: str, rows: list[Row], on_conflict: str = ""
) -> None:
    """One multi-row INSERT per chunk of rows (one round trip each; rows of a table share
    their columns)."""
    columns = list(rows[0])
    head = sql.SQL("insert into {} ({}) values ").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    tail = sql.SQL(f" on conflict {on_conflict}" if on_conflict else "")
    step = max(1, 30_000 // len(columns))  # under PostgreSQL's 65,535 parameters
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        query = head + sql.SQL(", ").join([one] * len(part)) + tail
        cur.execute(query, [row[c] for row in part for c in columns])
