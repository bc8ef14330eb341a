"""``labelgate audit``: verify, summarise and prune the audit store.

Only click is imported here; the store is imported inside the commands, so ``labelgate --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from labelgate.guard.cli import CLIError

if TYPE_CHECKING:
    from labelgate.guard.audit.store import AuditStore

EXIT_TAMPERED = 1
EXIT_UNREADABLE = 2


class _Unreadable(CLIError):
    exit_code = EXIT_UNREADABLE


def _db_path(db: Path | None) -> Path:
    from labelgate.guard.paths import default_db_path

    return db if db is not None else default_db_path()


db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Audit database (default: $LABELGATE_DB or ./.labelgate/audit.db).",
)


def _open(db: Path | None) -> AuditStore:
    import sqlite3

    from labelgate.guard.audit.store import AuditStore

    path = _db_path(db)
    try:
        store = AuditStore(path, readonly=True)
        has_ledger = store.db["ledger"].exists()
    except FileNotFoundError as exc:
        raise _Unreadable(str(exc)) from None
    except sqlite3.DatabaseError as exc:  # not a database, locked, ...
        raise _Unreadable(f"cannot open {path}: {exc}") from None
    if not has_ledger:
        store.close()
        raise _Unreadable(f"{path} is not a labelgate audit database")
    return store


@click.group()
def audit() -> None:
    """Inspect and verify the audit store."""


@audit.command()
@db_option
@click.option(
    "--expect",
    "expect_hash",
    default=None,
    help="A head hash printed by an earlier verify: fail unless the chain still contains it.",
)
def verify(db: Path | None, expect_hash: str | None) -> None:
    """Walk the hash chain; exit 1 at the first tampered record, 2 if unreadable."""
    import sqlite3

    with _open(db) as store:
        try:
            report = store.verify(expect_hash)
        except sqlite3.DatabaseError as exc:
            raise _Unreadable(f"cannot verify {store.path}: {exc}") from None
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


@audit.command()
@db_option
def stats(db: Path | None) -> None:
    """Row counts, chain head, file size and the last prune."""
    with _open(db) as store:
        counts = store.counts()
        seq, head = store.head()
        seal = store.seal()
        size = store.path.stat().st_size
    click.echo(f"database  {store.path} ({size / 1e6:.1f} MB)")
    for table, count in counts.items():
        click.echo(f"{table:<13} {count}")
    click.echo(f"chain head seq {seq} {head}")
    if seal is not None:
        click.echo(
            f"pruned {seal['created']} ({seal['by'] or 'prune'}): records written before "
            f"{seal['before']} (seq <= {seal['cut_seq']}); hash at the cut {seal['cut_hash']}"
        )


@audit.command()
@db_option
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Delete the records written before this: 30d, 12h, 2w ago, or an ISO date/time.",
)
@click.option("--vacuum", is_flag=True, help="Then give the freed space back (rewrites the file).")
def prune(db: Path | None, older_than: str, vacuum: bool) -> None:
    """Delete old records (and texts no message uses any more), sealing the chain at the cut:
    verify then checks what remains from the seal, which records what was deleted and when."""
    from labelgate.guard.audit.query import parse_when
    from labelgate.guard.audit.store import AuditStore

    try:
        before = parse_when(older_than)
    except ValueError:
        raise CLIError(f"--older-than {older_than!r}: say 30d, 12h, 2w or an ISO date") from None
    _open(db).close()  # an audit database, not any file
    with AuditStore(_db_path(db)) as store:
        report = store.prune(before, by=f"labelgate audit prune --older-than {older_than}")
        if vacuum:
            store.vacuum()
    click.echo(report.summary())
