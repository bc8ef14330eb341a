"""The fingerprint store on a real PostgreSQL: the SQLite store's answers, and two stores on one
database (two replicas) acting as one, through a lost connection too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_fixtures import *  # noqa: F403 - fixtures

from labelgate.guard.fingerprint import SQLiteFingerprintStore, TextMeta
from labelgate.guard.items import ItemKind
from labelgate.guard.labels import Lattice, LatticeConfig
from labelgate.guard.postgres import StateUnavailable

pg_store = pytest.importorskip("labelgate.guard.fingerprint.pg_store")
PostgresFingerprintStore = pg_store.PostgresFingerprintStore

LATTICE = Lattice(LatticeConfig(categories=["hr"]))
SECRET = LATTICE.label("confidential", "trusted", categories=["hr"], sources=["doc:hr"])
MEMO = (
    "The quarterly review found that the northern warehouse lost eleven pallets of copper "
    "wire to a mislabelled shipment, and the auditors asked for the manifests of every "
    "transfer since March to be kept until the insurance claim is settled."
)
OTHER = (
    "Lunch on Friday moves to the terrace if the weather holds; bring your own cup, the "
    "kitchen is short of mugs since the office party and nobody has returned them yet."
)
WAIT = 30.0  # a safety net for a broken listener, not a bound the test measures


@pytest.fixture
def replicas(pg_dsn: str) -> Iterator[tuple[PostgresFingerprintStore, PostgresFingerprintStore]]:
    a = PostgresFingerprintStore(pg_dsn, LATTICE)
    b = PostgresFingerprintStore(pg_dsn, LATTICE)
    yield a, b
    a.close()
    b.close()


def test_answers_as_the_sqlite_store_does(pg_dsn: str) -> None:
    pg = PostgresFingerprintStore(pg_dsn, LATTICE)
    lite = SQLiteFingerprintStore(":memory:", LATTICE)
    try:
        for store in (pg, lite):
            meta = TextMeta(kind=ItemKind.DOCUMENT, source="hr/memo", created="2026-12-01")
            first = store.add_text(MEMO, SECRET, meta=meta)
            assert store.add_text(MEMO, SECRET, meta=meta) == first  # kept once
            store.add_text(OTHER, LATTICE.label("internal"))
        assert len(pg) == len(lite) == 2
        quoted = f"Forwarding this: {MEMO[40:160]} -- thanks"
        for query in (MEMO, quoted, OTHER, "nothing like either of them at all, really"):
            got = [(m.text_id, m.label, m.matched, m.run) for m in pg.lookup(query)]
            want = [(m.text_id, m.label, m.matched, m.run) for m in lite.lookup(query)]
            assert got == want
        assert pg.lookup(quoted)[0].label == SECRET
        assert pg.get(first) == lite.get(first)
    finally:
        pg.close()
        lite.close()


def test_a_text_stored_at_one_replica_is_found_at_the_other(replicas: tuple) -> None:
    a, b = replicas
    assert b.lookup(MEMO) == []
    a.add_text(MEMO, SECRET, meta=TextMeta(source="hr/memo"))
    assert b.wait_until(lambda: b.loaded >= a.loaded, WAIT)  # the NOTIFY reached b
    (match,) = b.lookup(f"as they wrote: {MEMO[:120]}")
    assert match.label == SECRET and match.meta.source == "hr/memo"
    # and the other way, with the writer loading what it lacks before it writes
    b.add_text(OTHER, SECRET)
    assert a.wait_until(lambda: a.loaded >= b.loaded, WAIT)
    assert a.lookup(OTHER)[0].label == SECRET
    assert len(a) == len(b) == 2


def test_a_lost_listener_refuses_lookups_then_catches_up(pg_dsn: str, replicas: tuple) -> None:
    import psycopg

    a, b = replicas
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        # both listeners' sessions, as an operator's restart or a network cut would end them
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN labelgate_fingerprints%%' AND datname = current_database()"
        )
    assert b.wait_until(lambda: not b.in_step, WAIT)
    with pytest.raises(StateUnavailable, match="not in step"):
        b.lookup(MEMO)  # fail closed: its index may be missing rows
    a.add_text(MEMO, SECRET)  # written while b cannot hear of it
    assert b.wait_until(lambda: b.in_step and b.loaded >= a.loaded, WAIT)
    assert b.lookup(MEMO)[0].label == SECRET


def test_sql_lookups_find_the_same(pg_dsn: str) -> None:
    store = PostgresFingerprintStore(pg_dsn, LATTICE, memory_index=False)
    other = PostgresFingerprintStore(pg_dsn, LATTICE)  # postings kept: both write them
    try:
        other.add_text(MEMO, SECRET)
        (match,) = store.lookup(MEMO)  # no listener: every lookup reads the database
        assert match.label == SECRET and match.containment == 1.0
        assert len(store) == 1
    finally:
        store.close()
        other.close()


def test_unreachable_server_is_one_clear_error() -> None:
    dsn = "postgresql://labelgate:secret@127.0.0.1:1/nowhere"
    with pytest.raises(StateUnavailable) as caught:
        PostgresFingerprintStore(dsn, LATTICE)
    message = str(caught.value)
    assert message.startswith("PostgreSQL postgresql://labelgate@127.0.0.1:1/nowhere: cannot")
    assert "secret" not in message and "\n" not in message
