"""``labelgate audit``: verify, summarise and prune the audit store.

Only click is imported here; the store is imported inside the commands, so ``labelgate --help``
stays fast. Every command reads a SQLite file (``--db``) or a PostgreSQL database (``--dsn``,
or ``$LABELGATE_DSN`` when no ``--db`` is given).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from labelgate.guard.cli import CLIError

if TYPE_CHECKING:
    from labelgate.guard.audit.backend import AuditBackend

F = TypeVar("F", bound=Callable[..., object])

EXIT_TAMPERED = 1
EXIT_UNREADABLE = 2


class _Unreadable(CLIError):
    exit_code = EXIT_UNREADABLE


def _db_path(db: Path | None) -> Path:
    from labelgate.guard.paths import default_db_path

    return db if db is not None else default_db_path()


def target_of(db: Path | None, dsn: str | None) -> str | Path:
    """The store the options name: ``--dsn`` (a PostgreSQL URL), ``--db`` (a SQLite file),
    ``$LABELGATE_DSN`` when neither is given, else the default SQLite file."""
    from labelgate.guard.audit.backend import DSN_ENV, is_dsn

    if db is not None and dsn is not None:
        raise CLIError("say --db (a SQLite file) or --dsn (a PostgreSQL URL), not both")
    if dsn is None and db is None:
        dsn = os.environ.get(DSN_ENV) or None
    if dsn is not None:
        if not is_dsn(dsn):
            raise CLIError(f"--dsn: not a PostgreSQL URL (postgresql://user@host/db): {dsn!r}")
        return dsn
    return _db_path(db)


db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Audit database (default: $LABELGATE_DB or ./.labelgate/audit.db).",
)


dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="URL",
    help="A PostgreSQL audit store (postgresql://user@host:port/db) instead of --db; "
    "default: $LABELGATE_DSN when --db is not given.",
)


def store_options(command: F) -> F:
    """``--db`` and ``--dsn``: the store a command reads."""
    return db_option(dsn_option(command))


def _open(db: Path | None, dsn: str | None = None) -> AuditBackend:
    """The store, read-only; exit 2 with one line when it cannot be read."""
    import sqlite3

    from labelgate.guard.audit.backend import open_store
    from labelgate.guard.audit.errors import StoreUnavailable
    from labelgate.guard.audit.store import AuditStore

    target = target_of(db, dsn)
    try:
        store = open_store(target, readonly=True)
    except (FileNotFoundError, StoreUnavailable) as exc:
        raise _Unreadable(str(exc)) from None
    except sqlite3.DatabaseError as exc:  # not a database, locked, ...
        raise _Unreadable(f"cannot open {target}: {exc}") from None
    if isinstance(store, AuditStore):
        try:
            has_ledger = store.db["ledger"].exists()
        except sqlite3.DatabaseError as exc:
            store.close()
            raise _Unreadable(f"cannot open {target}: {exc}") from None
        if not has_ledger:
            store.close()
            raise _Unreadable(f"{target} is not a labelgate audit database")
    return store


@click.group()
def audit() -> None:
    """Inspect and verify the audit store."""


@audit.command()
@store_options
@click.option(
    "--expect",
    "expect_hash",
    default=None,
    help="A head hash printed by an earlier verify: fail unless the chain still contains it.",
)
def verify(db: Path | None, dsn: str | None, expect_hash: str | None) -> None:
    """Walk the hash chain; exit 1 at the first tampered record, 2 if unreadable."""
    verify_store(db, dsn, expect_hash)


def verify_store(db: Path | None, dsn: str | None, expect_hash: str | None) -> None:
    """``verify`` for both ``labelgate audit`` and ``labelgate trace``."""
    import sqlite3

    from labelgate.guard.audit.errors import StoreUnavailable

    with _open(db, dsn) as store:
        try:
            report = store.verify(expect_hash)
        except (sqlite3.DatabaseError, StoreUnavailable) as exc:
            raise _Unreadable(f"cannot verify {store.shown}: {exc}") from None
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


@audit.command()
@store_options
def stats(db: Path | None, dsn: str | None) -> None:
    """Row counts, chain head, size and the last prune."""
    with _open(db, dsn) as store:
        counts = store.counts()
        seq, head = store.head()
        seal = store.seal()
        size = store.size_bytes()
    click.echo(f"database  {store.shown} ({size / 1e6:.1f} MB)")
    for table, count in counts.items():
        click.echo(f"{table:<13} {count}")
    click.echo(f"chain head seq {seq} {head}")
    if seal is not None:
        click.echo(
            f"pruned {seal['created']} ({seal['by'] or 'prune'}): records written before "
            f"{seal['before']} (seq <= {seal['cut_seq']}); hash at the cut {seal['cut_hash']}"
        )


@audit.command()
@store_options
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Delete the records written before this: 30d, 12h, 2w ago, or an ISO date/time.",
)
@click.option(
    "--vacuum",
    is_flag=True,
    help="Then give the freed space back (SQLite: rewrites the file; PostgreSQL: VACUUM, "
    "the space is reused).",
)
def prune(db: Path | None, dsn: str | None, older_than: str, vacuum: bool) -> None:
    """Delete old records (and texts no message uses any more), sealing the chain at the cut:
    verify then checks what remains from the seal, which records what was deleted and when."""
    from labelgate.guard.audit.backend import open_store
    from labelgate.guard.audit.query import parse_when

    try:
        before = parse_when(older_than)
    except ValueError:
        raise CLIError(f"--older-than {older_than!r}: say 30d, 12h, 2w or an ISO date") from None
    _open(db, dsn).close()  # an audit database, not any file
    with open_store(target_of(db, dsn)) as store:
        report = store.prune(before, by=f"labelgate audit prune --older-than {older_than}")
        if vacuum:
            store.vacuum()
    click.echo(report.summary())
