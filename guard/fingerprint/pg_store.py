"""The fingerprint store on PostgreSQL, shared by several proxy replicas.

Tables (``MIGRATIONS``, applied by ``labelgate.guard.postgres.migrate`` and recorded in
``labelgate_schema`` as component ``fingerprints``) mirror the SQLite store's:
``fingerprint_texts`` (one row per stored text: a dense integer ``id``, the caller's ``key``,
label, metadata and the sorted fingerprints as a little-endian int64 blob),
``fingerprint_postings`` (hash -> text: the inverted index SQL lookups use) and
``fingerprint_meta`` (the winnowing parameters, and whether postings are kept).

How replicas act as one. Every replica keeps a memory index of every row (as the SQLite store
does) and looks up in memory; rows reach it two ways:

- its own writes, published as they commit;
- the others' writes: a writer sends ``NOTIFY labelgate_fingerprints, '<last id>'`` in the
  transaction that inserts the rows (delivered when it commits), and each replica's listener
  thread loads the rows it lacks (``id > loaded``) when told. On (re)connect the listener
  first LISTENs, then loads whatever it missed, so a dropped connection loses nothing.

Writers take one advisory lock per transaction: ids are then given (``max(id) + 1``) and
committed in order, so "every row up to ``loaded``" is a complete description of what a
replica holds, and a writer loads the rows others committed before it adds its own.

While the listener is disconnected the replica's index may be missing rows: lookups then raise
``StateUnavailable`` (the guard fails closed) until it is back and has caught up.

``memory_index=False`` looks up in SQL over the postings table instead (every lookup a query,
no listener): the alternative measured in ``tests/bench/bench_pg_store.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from labelgate.guard.fingerprint.indexed import META_COLUMNS, IndexedStore, MetaRow
from labelgate.guard.fingerprint.store import Entry, LookupOptions, Match, Query, TextMeta
from labelgate.guard.fingerprint.store import label_json as _label_json
from labelgate.guard.fingerprint.winnow import DEFAULT_PARAMS, Fingerprints, WinnowParams
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.postgres import (
    CONNECT_TIMEOUT,
    StateUnavailable,
    connect,
    migrate,
    redacted,
    unavailable,
)

CHANNEL = "labelgate_fingerprints"
WRITE_LOCK = 0x6C61_6265_6C01  # pg_advisory_xact_lock key of fingerprint writes
_LISTEN_POLL = 1.0  # seconds between checks that the store is closing (it also wakes us)
_RETRY = 1.0  # seconds between reconnection attempts of the listener
_log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: the three tables
    """
    CREATE TABLE fingerprint_texts (
        id             integer PRIMARY KEY,     -- dense row number, the memory index's row
        key            text    NOT NULL UNIQUE, -- the caller's text id (content + label hash)
        n_fingerprints integer NOT NULL,
        label_json     text    NOT NULL,
        kind           text    NOT NULL,        -- document, message, tool_result, ...
        source         text,                    -- tool, retrieval source, agent
        created        text    NOT NULL,        -- ISO 8601, UTC
        fingerprints   bytea   NOT NULL         -- sorted int64, little-endian
    );
    -- hash -> text: only SQL lookups (memory_index=False) read it; kept when asked for
    CREATE TABLE fingerprint_postings (
        hash    bigint  NOT NULL,
        text_id integer NOT NULL,
        PRIMARY KEY (hash, text_id)
    );
    CREATE TABLE fingerprint_meta (
        key   text PRIMARY KEY,                 -- 'params', 'postings'
        value text NOT NULL
    );
    """,
)

_SQL_LOOKUP = """
    WITH q(hash) AS (SELECT unnest(%(query)s::bigint[])),
    rare(hash) AS (
        SELECT f.hash FROM fingerprint_postings f JOIN q USING (hash)
        GROUP BY f.hash HAVING count(*) <= %(max_df)s
    ),
    shared(row_id, n) AS (
        SELECT f.text_id, count(*) FROM fingerprint_postings f JOIN rare USING (hash)
        GROUP BY f.text_id
    )
    SELECT s.row_id, s.n, t.n_fingerprints
    FROM shared s JOIN fingerprint_texts t ON t.id = s.row_id
    WHERE s.n >= %(threshold)s * t.n_fingerprints - 1e-9
      AND s.n >= least(%(min_matches)s, t.n_fingerprints)
"""


class PostgresFingerprintStore(IndexedStore):
    """Fingerprints of labeled texts in PostgreSQL, shared by replicas (see the module doc)."""

    def __init__(
        self,
        dsn: str,
        lattice: Lattice | None = None,
        params: WinnowParams | None = None,
        *,
        memory_index: bool = True,
        postings: bool = False,
        pool_size: int = 4,
    ) -> None:
        self.dsn = dsn
        self.path = redacted(dsn)  # what messages and operators see
        self._init_index(lattice, memory_index)
        self._lock = threading.Lock()  # serialises loads and writes of this process
        self._closing = threading.Event()
        self._ready = threading.Event()  # the listener is connected and caught up
        self._progress = threading.Condition()  # notified on every load and change of _ready
        self._failure: BaseException | None = None
        with connect(dsn) as conn:
            try:
                migrate(conn, "fingerprints", MIGRATIONS)
                self.params = self._check_params(conn, params)
                self.postings = self._check_postings(conn, postings or not memory_index)
            except psycopg.Error as exc:
                raise unavailable(dsn, exc, "set up the fingerprint tables") from None
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            open=False,
            check=ConnectionPool.check_connection,  # a connection broken by an outage is replaced
            name="labelgate-fingerprints",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            raise unavailable(dsn, exc) from None
        self._listener: threading.Thread | None = None
        if self._index is None:
            self._count = self._scalar("SELECT count(*) FROM fingerprint_texts")
            return
        self.refresh()
        self._listener = threading.Thread(
            target=self._listen, name="labelgate-fingerprints-listen", daemon=True
        )
        self._listener.start()
        if not self._ready.wait(CONNECT_TIMEOUT * 2) and not self._closing.is_set():
            self.close()
            raise StateUnavailable(f"PostgreSQL {self.path}: the listener did not start")

    # -- schema -----------------------------------------------------------------------------

    def _check_params(
        self, conn: psycopg.Connection[Any], params: WinnowParams | None
    ) -> WinnowParams:
        wanted = params or DEFAULT_PARAMS
        conn.execute(
            "INSERT INTO fingerprint_meta (key, value) VALUES ('params', %s) "
            "ON CONFLICT (key) DO NOTHING",
            (wanted.model_dump_json(),),
        )
        row = conn.execute("SELECT value FROM fingerprint_meta WHERE key = 'params'").fetchone()
        assert row is not None
        stored = WinnowParams.model_validate_json(row[0])
        if params is not None and params != stored:
            raise ValueError(f"{self.path} holds fingerprints made with {stored}, not {params}")
        return stored

    def _check_postings(self, conn: psycopg.Connection[Any], wanted: bool) -> bool:
        """The first store to open the database decides whether postings are kept; once
        kept, every write maintains them (an SQL lookup must see every row)."""
        conn.execute(
            "INSERT INTO fingerprint_meta (key, value) VALUES ('postings', %s) "
            "ON CONFLICT (key) DO NOTHING",
            (json.dumps(wanted),),
        )
        row = conn.execute("SELECT value FROM fingerprint_meta WHERE key = 'postings'").fetchone()
        kept = bool(row is not None and json.loads(row[0]))
        if wanted and not kept:
            raise ValueError(f"{self.path} was created without the postings table")
        return kept

    # -- keeping the memory index in step ---------------------------------------------------

    def refresh(self) -> int:
        """Load rows other replicas added since the last load; return how many."""
        if self._index is None:
            return 0
        with self._lock:
            try:
                with self._pool.connection() as conn:
                    return self._load_new(conn)
            except psycopg.Error as exc:
                raise unavailable(self.dsn, exc, "load new fingerprints") from None

    def _load_new(self, conn: psycopg.Connection[Any]) -> int:
        """Called with the lock held."""
        cursor = conn.cursor(binary=True)  # bytea as bytes, not hex text
        cursor.execute(
            "SELECT id, n_fingerprints, fingerprints FROM fingerprint_texts "
            "WHERE id > %s ORDER BY id",
            (self._loaded,),
        )
        return self._load_rows(cursor)

    def _listen(self) -> None:
        """The listener thread: LISTEN, catch up, then load on every notification; on a lost
        connection, mark the store failed (lookups refuse) and reconnect."""
        while not self._closing.is_set():
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.refresh()  # after LISTEN: nothing committed meanwhile is missed
                    self._failure = None
                    self._set_ready(True)
                    self._follow(conn)
            except (psycopg.Error, StateUnavailable) as exc:
                if self._closing.is_set():
                    break
                if self._failure is None:
                    _log.error("fingerprint listener lost PostgreSQL %s: %s", self.path, exc)
                self._failure = exc
                self._set_ready(False)
                self._closing.wait(_RETRY)

    def _follow(self, conn: psycopg.Connection[Any]) -> None:
        while not self._closing.is_set():
            for notify in conn.notifies(timeout=_LISTEN_POLL):
                if self._closing.is_set():
                    return
                if int(notify.payload or 0) > self._loaded:  # not one of ours, nor loaded
                    self.refresh()

    def _set_ready(self, ready: bool) -> None:
        with self._progress:
            if ready:
                self._ready.set()
            else:
                self._ready.clear()
            self._progress.notify_all()

    def _publish(self, ids: np.ndarray, sizes: np.ndarray, hashes: Fingerprints) -> None:
        super()._publish(ids, sizes, hashes)
        with self._progress:
            self._progress.notify_all()

    @property
    def in_step(self) -> bool:
        """The listener is connected and has loaded what it missed: lookups are answered."""
        return self._index is None or self._ready.is_set()

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked at every load and every change of
        ``in_step``), at most ``timeout`` seconds; return it."""
        with self._progress:
            return self._progress.wait_for(predicate, timeout)

    def _check_ready(self) -> None:
        if self._index is not None and not self._ready.is_set():
            failure = str(self._failure).strip().splitlines() if self._failure else []
            reason = f": {failure[0]}" if failure else ""
            raise StateUnavailable(
                f"PostgreSQL {self.path}: this replica's fingerprint index is not in step "
                f"(lookups refused until it reconnects){reason}"
            )

    # -- writing ----------------------------------------------------------------------------

    def add_many(self, entries: Iterable[Entry]) -> int:
        """Store new entries in one transaction; ids already stored are ignored."""
        unique: dict[str, Entry] = {}
        for entry in entries:
            unique.setdefault(entry.text_id, entry)
        if not unique or all(key in self._known for key in unique):
            return 0
        with self._lock:  # spans commit and publish: the listener cannot load ours twice
            try:
                with self._pool.connection() as conn, conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    if self._index is not None:
                        self._load_new(conn)  # rows others committed: ids stay in order
                    batch = self._drop_existing(conn, list(unique.values()))
                    if not batch:
                        return 0
                    ids, sizes, hashes = self._insert(conn, batch)
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(int(ids[-1]))))
            except psycopg.Error as exc:
                raise unavailable(self.dsn, exc, "store fingerprints") from None
            if self._index is not None:
                self._publish(ids, sizes, hashes)
            else:
                self._count += len(batch)
            self._remember_keys(e.text_id for e in batch)
        return len(batch)

    def _drop_existing(self, conn: psycopg.Connection[Any], batch: list[Entry]) -> list[Entry]:
        keys = [e.text_id for e in batch]
        rows = conn.execute("SELECT key FROM fingerprint_texts WHERE key = ANY(%s)", (keys,))
        existing = {key for (key,) in rows}
        self._remember_keys(existing)
        return [e for e in batch if e.text_id not in existing]

    def _insert(
        self, conn: psycopg.Connection[Any], batch: list[Entry]
    ) -> tuple[np.ndarray, np.ndarray, Fingerprints]:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM fingerprint_texts").fetchone()
        first = int(row[0] if row else 0) + 1
        ids = np.arange(first, first + len(batch), dtype=np.int32)
        sizes = np.array([len(e.fingerprints) for e in batch], dtype=np.int32)
        cursor = conn.cursor()
        columns = "id, key, n_fingerprints, label_json, kind, source, created, fingerprints"
        with cursor.copy(f"COPY fingerprint_texts ({columns}) FROM STDIN") as copy:
            for row_id, e in zip(ids.tolist(), batch, strict=True):
                copy.write_row(
                    (
                        row_id,
                        e.text_id,
                        len(e.fingerprints),
                        _label_json(e.label),
                        e.meta.kind.value,
                        e.meta.source,
                        e.meta.created,
                        e.fingerprints.astype("<i8").tobytes(),
                    )
                )
        hashes = (
            np.concatenate([e.fingerprints for e in batch]).astype(np.int64)
            if sizes.sum()
            else np.empty(0, dtype=np.int64)
        )
        if self.postings:
            rows = np.repeat(ids, sizes)
            with cursor.copy("COPY fingerprint_postings (hash, text_id) FROM STDIN") as copy:
                for pair in zip(hashes.tolist(), rows.tolist(), strict=True):
                    copy.write_row(pair)
        return ids, sizes, hashes

    # -- reading ----------------------------------------------------------------------------

    def lookup_fingerprints(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[Match]:
        self._check_ready()
        try:
            return super().lookup_fingerprints(fingerprints, options)
        except psycopg.Error as exc:
            raise unavailable(self.dsn, exc, "look fingerprints up") from None

    def lookup_query(self, query: Query, options: LookupOptions) -> list[Match]:
        self._check_ready()
        try:
            return super().lookup_query(query, options)
        except psycopg.Error as exc:
            raise unavailable(self.dsn, exc, "look fingerprints up") from None

    def _candidates_sql(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[tuple[int, int, int]]:
        args = {
            "query": fingerprints.tolist(),
            "max_df": options.max_df,
            "threshold": options.threshold,
            "min_matches": options.min_matches,
        }
        with self._pool.connection() as conn:
            candidates = [(int(r), int(n), int(s)) for r, n, s in conn.execute(_SQL_LOOKUP, args)]
        return sorted(candidates, key=lambda c: (-c[1] / c[2], -c[1], c[0]))

    def _label_texts(self) -> list[str]:
        sql = "SELECT DISTINCT label_json FROM fingerprint_texts"
        try:
            with self._pool.connection() as conn:
                return [row[0] for row in conn.execute(sql).fetchall()]
        except psycopg.Error as exc:
            raise unavailable(self.dsn, exc, "read the stored labels") from None

    def _fetch_metas(self, row_ids: list[int]) -> Sequence[MetaRow]:
        sql = f"SELECT {META_COLUMNS} FROM fingerprint_texts WHERE id = ANY(%s)"
        with self._pool.connection() as conn:
            return conn.execute(sql, (row_ids,)).fetchall()

    def get(self, text_id: str) -> tuple[Label, TextMeta, int] | None:
        sql = f"SELECT {META_COLUMNS} FROM fingerprint_texts WHERE key = %s"
        try:
            with self._pool.connection() as conn:
                row = conn.execute(sql, (text_id,)).fetchone()
        except psycopg.Error as exc:
            raise unavailable(self.dsn, exc, "read a fingerprinted text") from None
        if row is None:
            return None
        _, _, label_text, kind, source, created, size = row
        return self._label(label_text), TextMeta(kind=kind, source=source, created=created), size

    def _scalar(self, sql: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(sql.encode()).fetchone()
        return int(row[0] or 0) if row else 0

    # -- housekeeping -----------------------------------------------------------------------

    def __len__(self) -> int:
        if self._index is None:  # every replica writes: only the database knows
            return self._scalar("SELECT count(*) FROM fingerprint_texts")
        return self._count

    def stats(self) -> dict[str, int]:
        """Sizes, for benchmarks and operators."""
        index = self._index
        texts = self._scalar("SELECT pg_total_relation_size('fingerprint_texts')")
        postings = self._scalar("SELECT pg_total_relation_size('fingerprint_postings')")
        return {
            "texts": self._count,
            "index_postings": len(index) if index is not None else 0,
            "index_bytes": (index.nbytes + self._sizes.nbytes) if index is not None else 0,
            "disk_bytes": texts + postings,
            "postings_disk_bytes": postings,
        }

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        listener = self._listener
        if listener is not None and listener.is_alive():
            try:  # wake the listener now rather than at its next poll
                with self._pool.connection(timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute("SELECT pg_notify(%s, '0')", (CHANNEL,))
            except (psycopg.Error, PoolTimeout):
                pass  # it stops at its next poll
            listener.join(_LISTEN_POLL * 2 + CONNECT_TIMEOUT)
        self._pool.close()
