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

from labelgate.guard.audit.contents import content_row, content_sha256

Migration = Callable[[Database], None]

GENESIS_HASH = "0" * 64
CHAIN_COLUMNS: dict[str, type] = {"seq": int, "prev_hash": str, "hash": str}
CHAINED_TABLES = ("requests", "messages", "label_events", "decisions", "spans", "seals")


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


def m004_contents(db: Database) -> None:
    """Each distinct message text stored once (``guard.audit.contents``).

    1. ``contents (sha256, size, text, packed)`` and ``messages.content_sha256``;
    2. the full-text index moves from ``messages.content`` to ``contents.text``;
    3. every text held in ``messages.content`` moves to ``contents`` (``content`` becomes
       null, ``content_sha256`` names its row): its hash is unchanged, because a message row
       is hashed with its text in place of the reference (``chain.hashed_row``);
    4. ``message_texts``: the messages with their text joined back, for SQL readers.
    """
    conn = db.conn
    conn.execute(
        "create table contents (sha256 text primary key, size integer not null, "
        "text text, packed blob)"
    )
    conn.execute('alter table messages add column "content_sha256" text')
    conn.execute("create index idx_messages_content_sha256 on messages (content_sha256)")
    for trigger in ("messages_ai", "messages_ad", "messages_au"):
        conn.execute(f'drop trigger if exists "{trigger}"')
    conn.execute("drop table if exists messages_fts")
    last = 0
    while True:  # in chunks of rowids, so a large store is never read into memory at once
        chunk = conn.execute(
            "select rowid, content from messages where rowid > ? and content is not null "
            "order by rowid limit 500",
            [last],
        ).fetchall()
        if not chunk:
            break
        moved = [(rowid, text, content_sha256(text)) for rowid, text in chunk]
        conn.executemany(
            "insert or ignore into contents (sha256, size, text, packed) "
            "values (:sha256, :size, :text, :packed)",
            [content_row(text, sha) for _, text, sha in moved],
        )
        conn.executemany(
            "update messages set content = null, content_sha256 = ? where rowid = ?",
            [(sha, rowid) for rowid, _, sha in moved],
        )
        last = chunk[-1][0]
    conn.execute(
        "create virtual table contents_fts using fts5 "
        "(text, tokenize='porter', content=\"contents\")"
    )
    conn.execute("insert into contents_fts (rowid, text) select rowid, text from contents")
    conn.execute(
        "create trigger contents_ai after insert on contents begin "
        "insert into contents_fts (rowid, text) values (new.rowid, new.text); end"
    )
    conn.execute(
        "create trigger contents_ad after delete on contents begin "
        "insert into contents_fts (contents_fts, rowid, text) "
        "values ('delete', old.rowid, old.text); end"
    )
    conn.execute(
        "create trigger contents_au after update on contents begin "
        "insert into contents_fts (contents_fts, rowid, text) "
        "values ('delete', old.rowid, old.text); "
        "insert into contents_fts (rowid, text) values (new.rowid, new.text); end"
    )
    conn.execute(
        "create view message_texts as select m.id, m.request_id, m.position, m.role, m.name, "
        "m.kind, m.item_id, coalesce(m.content, c.text) as content, m.content_sha256, "
        "coalesce(c.size, length(cast(m.content as blob))) as content_size, "
        "c.packed as content_packed, m.label_json, m.provenance_json, m.tool_calls_json, "
        "m.seq, m.prev_hash, m.hash "
        "from messages m left join contents c on c.sha256 = m.content_sha256"
    )


def m005_seals(db: Database) -> None:
    """``seals``: one chained record per prune (``AuditStore.prune``): what was deleted, when,
    and the chain's hash at the cut, from which ``verify`` checks what remains."""
    _chained_table(
        db,
        "seals",
        {
            "id": str,
            "created": str,
            "before": str,
            "cut_seq": int,
            "cut_hash": str,
            "previous_cut_seq": int,
            "deleted_json": str,
            "by": str,
        },
        pk="id",
    )


MIGRATIONS: list[Migration] = [
    m001_initial,
    m002_indexes,
    m003_messages_fts,
    m004_contents,
    m005_seals,
]


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
