"""The audit schema, built by an ordered list of migrations.

Each migration is a function of the database; its name is recorded with the time it was applied
in ``_migrations``, so ``migrate`` applies only the missing ones and is safe to call on every
open. Never edit a migration that has shipped: append a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from sqlite_utils import Database

Migration = Callable[[Database], None]

GENESIS_HASH = "0" * 64
CHAIN_COLUMNS: dict[str, type] = {"seq": int, "prev_hash": str, "hash": str}
CHAINED_TABLES = ("requests", "messages", "label_events", "decisions", "spans")


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """One write transaction taken up front, so two writers never interleave a chain."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    else:
        db.conn.execute("COMMIT")


def _chained_table(
    db: Database, name: str, columns: dict[str, type], pk: str | tuple[str, ...]
) -> None:
    db.create_table(name, {**columns, **CHAIN_COLUMNS}, pk=pk, not_null=set(CHAIN_COLUMNS))
    db.table(name).create_index(["seq"], unique=True)


def m001_initial(db: Database) -> None:
    _chained_table(
        db,
        "requests",
        {
            "id": str,
            "trace_id": str,
            "session_id": str,
            "agent": str,
            "model": str,
            "started": str,
            "duration_ms": float,
            "status": str,
            "label_json": str,
            "decision": str,
            "error": str,
            "input_tokens": int,
            "output_tokens": int,
        },
        pk="id",
    )
    _chained_table(
        db,
        "messages",
        {
            "id": str,
            "request_id": str,
            "position": int,
            "role": str,
            "name": str,
            "kind": str,
            "item_id": str,
            "content": str,
            "label_json": str,
            "provenance_json": str,
            "tool_calls_json": str,
        },
        pk="id",
    )
    _chained_table(
        db,
        "label_events",
        {
            "id": str,
            "request_id": str,
            "item_id": str,
            "origin": str,
            "detail": str,
            "rule": str,
            "ref": str,
            "label_json": str,
            "previous_label_json": str,
            "created": str,
        },
        pk="id",
    )
    _chained_table(
        db,
        "decisions",
        {
            "id": str,
            "request_id": str,
            "trace_id": str,
            "span_id": str,
            "sink": str,
            "action": str,
            "rule_chain_json": str,
            "reason": str,
            "label_json": str,
            "created": str,
        },
        pk="id",
    )
    _chained_table(
        db,
        "spans",
        {
            "trace_id": str,
            "span_id": str,
            "parent_id": str,
            "name": str,
            "kind": str,
            "start_ns": int,
            "end_ns": int,
            "status": str,
            "status_message": str,
            "scope": str,
            "attributes_json": str,
            "events_json": str,
            "resource_json": str,
        },
        pk=("trace_id", "span_id"),
    )
    db.create_table(
        "ledger",
        {
            "seq": int,
            "table_name": str,
            "row_key": str,
            "prev_hash": str,
            "hash": str,
            "created": str,
        },
        pk="seq",
        not_null={"table_name", "row_key", "prev_hash", "hash", "created"},
    )


def m002_indexes(db: Database) -> None:
    db.table("requests").create_index(["trace_id"])
    db.table("requests").create_index(["session_id"])
    db.table("requests").create_index(["started"])
    db.table("messages").create_index(["request_id", "position"])
    db.table("messages").create_index(["item_id"])
    db.table("label_events").create_index(["item_id"])
    db.table("decisions").create_index(["request_id"])
    db.table("decisions").create_index(["trace_id"])
    db.table("spans").create_index(["parent_id"])
    db.table("spans").create_index(["start_ns"])


def m003_messages_fts(db: Database) -> None:
    # Triggers keep the index in step with every insert, in the writer's own transaction.
    db.table("messages").enable_fts(["content"], create_triggers=True, tokenize="porter")


MIGRATIONS: list[Migration] = [m001_initial, m002_indexes, m003_messages_fts]


def applied_migrations(db: Database) -> list[str]:
    if not db["_migrations"].exists():
        return []
    return [row["name"] for row in db.query("select name from _migrations order by id")]


def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their names."""
    db.execute(
        "create table if not exists _migrations "
        "(id integer primary key, name text not null unique, applied text not null)"
    )
    applied: list[str] = []
    for migration in migrations:
        name = migration.__name__
        with immediate(db):
            # Checked inside the write lock: another process may have just applied it.
            done = db.execute("select 1 from _migrations where name = ?", [name]).fetchone()
            if done:
                continue
            migration(db)
            db.execute(
                "insert into _migrations (name, applied) values (?, ?)",
                [name, datetime.now(UTC).isoformat()],
            )
        applied.append(name)
    return applied
