"""Read-only SQL over either backend, for the query layer (``AuditReader``).

The queries are written once, with SQLite's placeholders (``?`` and ``:name``); the few
expressions that differ between SQLite and PostgreSQL (JSON fields, ISO times as epoch
nanoseconds, full-text search) come from the source's ``Dialect``. ``PgSource`` turns the
placeholders into psycopg's (``%s``, ``%(name)s``) and runs each query in a read-only
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from sqlite_utils import Database

Row = dict[str, Any]
Params = Sequence[Any] | dict[str, Any]


class Dialect(Protocol):
    """The SQL expressions that differ between the backends."""

    like: str  # a case-insensitive LIKE

    def json_field(self, column: str, key: str) -> str:
        """The text of top-level field ``key`` of the JSON text in ``column``."""
        ...

    def json_has(self, column: str, key: str, param: str) -> str:
        """True when field ``key`` of the JSON in ``column`` is, or is a list holding, the
        value of ``:param``."""
        ...

    def epoch_ns(self, column: str) -> str:
        """An ISO time in ``column`` as integer nanoseconds since the epoch."""
        ...

    def fts_keys(self) -> str | None:
        """Trace keys (``k``) of the messages matching ``:q``, best first, ``:limit`` of
        them; None where there is no full-text index."""
        ...

    def fts_query(self, text: str) -> str:
        """The ``:q`` value for ``text``, matched word for word (no query syntax)."""
        ...


class SqlSource(Protocol):
    dialect: Dialect

    def rows(self, sql: str, params: Params = ()) -> list[Row]: ...

    def names(self) -> set[str]:
        """The tables and views."""
        ...

    def close(self) -> None: ...


class SqliteDialect:
    like = "like"  # ASCII case-insensitive in SQLite

    def __init__(self, db: Database) -> None:
        self.db = db

    def json_field(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.\"{key}\"')"

    def json_has(self, column: str, key: str, param: str) -> str:
        return f"exists (select 1 from json_each({column}, '$.\"{key}\"') where value = :{param})"

    def epoch_ns(self, column: str) -> str:
        # julianday() is about 20 µs precise: enough to sort and filter traces.
        return f"((julianday({column}) - 2440587.5) * 86400000000000)"

    def fts_keys(self) -> str | None:
        names = set(self.db.table_names())
        if "contents_fts" in names:  # each text indexed once; every message using it
            return (
                "select coalesce(r.trace_id, r.id) as k from contents_fts f "
                "join contents c on c.rowid = f.rowid "
                "join messages m on m.content_sha256 = c.sha256 "
                "join requests r on r.id = m.request_id "
                "where contents_fts match :q order by f.rank, m.seq desc limit :limit"
            )
        if "messages_fts" in names:  # a store from before contents were shared
            return (
                "select coalesce(r.trace_id, r.id) as k from messages_fts f "
                "join messages m on m.rowid = f.rowid join requests r on r.id = m.request_id "
                "where messages_fts match :q order by f.rank limit :limit"
            )
        return None

    def fts_query(self, text: str) -> str:
        return str(self.db.quote_fts(text))


class SqliteSource:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect: Dialect = SqliteDialect(db)

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self.db.query(sql, params))

    def names(self) -> set[str]:
        return set(self.db.table_names()) | set(self.db.view_names())

    def close(self) -> None:
        self.db.close()


class PgDialect:
    like = "ilike"

    def json_field(self, column: str, key: str) -> str:
        return f"(cast({column} as jsonb) ->> '{key}')"

    def json_has(self, column: str, key: str, param: str) -> str:
        # jsonb @> a string: the field is that string, or an array holding it.
        return (
            f"coalesce((cast({column} as jsonb) -> '{key}') @> to_jsonb(cast(:{param} as text)),"
            " false)"
        )

    def epoch_ns(self, column: str) -> str:
        return f"(extract(epoch from cast({column} as timestamptz)) * 1000000000)"

    def fts_keys(self) -> str | None:
        # ``contents.tsv``: an English tsvector of each text (migration 0001), GIN indexed.
        return (
            "select coalesce(r.trace_id, r.id) as k from contents c "
            "join messages m on m.content_sha256 = c.sha256 "
            "join requests r on r.id = m.request_id "
            "where c.tsv @@ plainto_tsquery('english', :q) "
            "order by ts_rank(c.tsv, plainto_tsquery('english', :q)) desc, m.seq desc "
            "limit :limit"
        )

    def fts_query(self, text: str) -> str:
        return text  # plainto_tsquery takes words, not syntax


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def pg_placeholders(sql: str) -> str:
    """SQLite's ``?`` and ``:name`` as psycopg's ``%s`` and ``%(name)s`` (``%`` doubled).
    The queries hold neither in a string literal."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    return _NAMED.sub(r"%(\1)s", sql)
