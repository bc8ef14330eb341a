"""What every PostgreSQL-backed part of labelgate shares: connecting, readable migrations, and
one error for "the shared state cannot be reached".

The state of several proxy replicas (``state: {backend: postgres, dsn: ...}``) lives in one
database. Each part (fingerprints, approvals, rate limits, the audit trail) owns its tables and
lists its migrations as plain SQL, in order, next to its code; ``migrate`` applies the ones a
database lacks and records them in one table a person can read::

    SELECT * FROM labelgate_schema;   -- component | version | applied

Replicas starting together migrate one at a time (an advisory lock), so none sees half a schema.

psycopg 3 is an optional dependency (``pip install 'labelgate[postgres]'``): it is imported
here, and this module only by the PostgreSQL backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from labelgate.guard.state import StateUnavailable

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - the extra is part of dev
    raise ImportError(
        "state.backend postgres needs psycopg: pip install 'labelgate[postgres]'"
    ) from exc

CONNECT_TIMEOUT = 5  # seconds: an unreachable server is an error at start, not a hang
# pg_advisory_xact_lock keys (one int8 namespace per database): fixed and distinct.
__all__ = ["StateUnavailable", "connect", "migrate", "redacted", "unavailable"]

MIGRATE_LOCK = 0x6C61_6265_6C00  # "label" + 0
SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS labelgate_schema (
    component text PRIMARY KEY,          -- 'fingerprints', 'approvals', 'limits', 'audit', ...
    version   integer NOT NULL,          -- how many of its migrations are applied
    applied   timestamptz NOT NULL DEFAULT now()
)
"""


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages (``postgresql://u@host:5432/db``)."""
    if "://" not in dsn:  # key=value form: drop a password=... pair
        return " ".join(p for p in dsn.split() if not p.startswith("password="))
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def unavailable(dsn: str, exc: BaseException, doing: str = "connect") -> StateUnavailable:
    """A one-line error naming the server (without password) and the driver's reason."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StateUnavailable(f"PostgreSQL {redacted(dsn)}: cannot {doing}: {reason}")


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection (autocommit unless told), or ``StateUnavailable`` in one line."""
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        raise unavailable(dsn, exc) from None


def migrate(conn: psycopg.Connection[Any], component: str, migrations: Sequence[str]) -> int:
    """Apply ``component``'s migrations the database lacks, in order and in one transaction
    (all or none); return the version now applied. A database newer than this code is
    refused."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(SCHEMA_TABLE)
        row = conn.execute(
            "SELECT version FROM labelgate_schema WHERE component = %s", (component,)
        ).fetchone()
        have = int(row[0]) if row else 0
        if have > len(migrations):
            raise StateUnavailable(
                f"the database's {component} schema is version {have}, newer than this "
                f"labelgate knows ({len(migrations)}): upgrade labelgate"
            )
        for version, sql in enumerate(migrations[have:], start=have + 1):
            conn.execute(sql.encode())  # bytes: a script of several statements, no parameters
            conn.execute(
                "INSERT INTO labelgate_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                "applied = now()",
                (component, version),
            )
    return len(migrations)
