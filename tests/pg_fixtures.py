"""A real PostgreSQL for the shared-state tests: one throwaway database per test session.

The server is ``$LABELGATE_TEST_PG`` (a DSN whose user may create databases), by default the
machine's own on loopback (``.ci/run`` installs and starts Debian's where there is none). Where
none answers, the tests that need it skip, saying so, except under CI, where they fail.

Import the fixtures into a test module with ``from pg_fixtures import *``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["pg_dsn", "pg_session_dsn"]

SERVER = os.environ.get("LABELGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@pytest.fixture(scope="session")
def pg_session_dsn() -> Iterator[str]:
    """The DSN of a database made for this session (``labelgate_test_<random>``), dropped
    after it."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(SERVER, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        reason = f"no PostgreSQL at {SERVER} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run should have started one")
        pytest.skip(reason)
    name = f"labelgate_test_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield _with_database(SERVER, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_dsn(pg_session_dsn: str) -> str:
    """The session's database with an empty schema (each test starts with no tables)."""
    import psycopg

    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return pg_session_dsn
