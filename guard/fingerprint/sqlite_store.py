"""The default fingerprint store: one SQLite file (sqlite-utils), with an in-memory index.

Tables:

- ``texts(id, key, n_fingerprints, label_json, kind, source, created, fingerprints)``: one row
  per stored text. ``key`` is the caller's ``text_id``; ``id`` the dense integer the postings
  and the memory index refer to; ``fingerprints`` the sorted int64 array as a little-endian
  blob, so that the memory index loads at open without reading millions of posting rows.
- ``fingerprints(hash, text_id)``, WITHOUT ROWID, primary key ``(hash, text_id)``: the
  inverted index SQL lookups use (``memory_index=False``, and the model for a shared
  PostgreSQL backend). ``postings=False`` drops it when only the memory index is used.
- ``store_meta(key, value)``: the fingerprint parameters (``params``); a store refuses other
  parameters. A file written with an older scheme (``version``) is upgraded at open: its
  texts keep their fingerprints, listed under ``legacy`` (the old parameters and the last row
  written with them), and every text lookup also hashes the new text as the old scheme did,
  so they keep matching; new texts get the current scheme.

Lookups use the memory index by default (numpy sorted arrays; see ``memindex``), and SQLite
only to fetch the label and metadata of the few matches.

Thread-safety: one store object may be shared by threads. Writes (``add_many``) are serialised
by a lock and use their own connection; lookups use a second connection (WAL mode lets them
read while a write transaction is open) and read an immutable snapshot of the memory index, so
the proxy may add from a background writer thread while its event loop looks up. Several
processes may share the file: each write takes SQLite's write lock (``BEGIN IMMEDIATE``) and
first loads rows other processes added; a reader process calls ``refresh()`` to catch up.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlite_utils

from labelgate.guard.fingerprint.indexed import META_COLUMNS, IndexedStore, MetaRow
from labelgate.guard.fingerprint.store import (
    Entry,
    LookupOptions,
    TextMeta,
    label_json,
)
from labelgate.guard.fingerprint.winnow import (
    DEFAULT_PARAMS,
    SCHEME_VERSION,
    Fingerprints,
    WinnowParams,
)
from labelgate.guard.labels import Label, Lattice

_SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit on old builds
_log = logging.getLogger(__name__)


def _connect(path: str) -> sqlite3.Connection:
    # autocommit: transactions are explicit (BEGIN IMMEDIATE) so their extent is obvious
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _chunks(items: list[str], size: int = _SQL_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteFingerprintStore(IndexedStore):
    """Fingerprints of labeled texts in SQLite, looked up through a memory index."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        lattice: Lattice | None = None,
        params: WinnowParams | None = None,
        *,
        memory_index: bool = True,
        postings: bool = True,
        cache_mb: int = 128,
    ) -> None:
        if not memory_index and not postings:
            raise ValueError("lookups need the memory index or the postings table")
        self.path = str(path)
        self._init_index(lattice, memory_index)
        self._in_memory = self.path == ":memory:"
        self._write = _connect(self.path)
        # one connection for ":memory:" (a second one would open another, empty database)
        self._read = self._write if self._in_memory else _connect(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock if self._in_memory else threading.Lock()
        self._db = sqlite_utils.Database(self._write)
        self._setup(cache_mb)
        self.params = self._check_params(params)
        self.postings = self._check_postings(postings)
        self.refresh()

    # -- schema -----------------------------------------------------------------------------

    def _setup(self, cache_mb: int) -> None:
        if not self._in_memory:
            self._db.enable_wal()
        for conn in {id(self._write): self._write, id(self._read): self._read}.values():
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = {-1024 * cache_mb}")
        self._db.table("texts").create(
            {
                "id": int,
                "key": str,
                "n_fingerprints": int,
                "label_json": str,
                "kind": str,
                "source": str,
                "created": str,
                "fingerprints": bytes,
            },
            pk="id",
            not_null={"key", "n_fingerprints", "label_json", "kind", "created", "fingerprints"},
            if_not_exists=True,
        )
        self._db.table("texts").create_index(["key"], unique=True, if_not_exists=True)
        self._db.table("store_meta").create(
            {"key": str, "value": str}, pk="key", if_not_exists=True
        )

    def _check_params(self, params: WinnowParams | None) -> WinnowParams:
        table = self._db.table("store_meta")
        rows = list(table.rows_where("key = ?", ["params"]))
        if not rows:
            params = params or DEFAULT_PARAMS
            table.insert({"key": "params", "value": params.model_dump_json()})
            return params
        try:
            stored = WinnowParams.model_validate_json(rows[0]["value"])
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        if stored.version < SCHEME_VERSION:
            stored = self._upgrade(stored, params)
        elif params is not None and params != stored:
            raise ValueError(f"{self.path} holds fingerprints made with {stored}, not {params}")
        for legacy in table.rows_where("key = ?", ["legacy"]):
            self._legacy = [
                (WinnowParams.model_validate(old), int(last))
                for old, last in json.loads(legacy["value"])
            ]
        return stored

    def _upgrade(self, old: WinnowParams, params: WinnowParams | None) -> WinnowParams:
        """Move a file written with an older scheme to the current one: its texts keep their
        fingerprints (listed as legacy, with the last row written so) and stay found."""
        new = params or WinnowParams(k=old.k)
        if new.version != SCHEME_VERSION or new.k != old.k:
            raise ValueError(
                f"{self.path} holds fingerprints of scheme {old.version} with k={old.k}: "
                f"they can be kept only under scheme {SCHEME_VERSION} with the same k, not "
                f"{new}. Open it with WinnowParams(k={old.k}), or move it aside (its texts "
                "cannot be fingerprinted again: only hashes are stored) to start a new store"
            )
        with self._write_lock, self._transaction() as conn:
            last = int(conn.execute("SELECT coalesce(max(id), 0) FROM texts").fetchone()[0])
            row = conn.execute("SELECT value FROM store_meta WHERE key = 'legacy'").fetchone()
            legacy = json.loads(row[0]) if row else []
            if last > max((end for _, end in legacy), default=0):
                legacy.append([old.model_dump(), last])
            conn.execute(
                "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('legacy', ?), "
                "('params', ?)",
                (json.dumps(legacy), new.model_dump_json()),
            )
        _log.warning(
            "%s: fingerprint scheme %d -> %d; its %d texts keep scheme %d (still found)",
            self.path,
            old.version,
            new.version,
            last,
            old.version,
        )
        return new

    def _check_postings(self, wanted: bool) -> bool:
        """Keep the postings table complete: once it exists, every write maintains it."""
        if self._db["fingerprints"].exists():
            return True
        if not wanted:
            return False
        if self._db["texts"].count:
            raise ValueError(f"{self.path} was created without the postings table")
        self._write.execute(
            "CREATE TABLE fingerprints (hash INTEGER NOT NULL, "
            "text_id INTEGER NOT NULL, PRIMARY KEY (hash, text_id)) WITHOUT ROWID"
        )
        return True

    # -- loading the memory index ----------------------------------------------------------

    def refresh(self) -> int:
        """Load rows added since the last load (by this or another process); return how many."""
        if self._index is None:
            self._count = self._read_scalar("SELECT count(*) FROM texts")
            return 0
        with self._write_lock:
            return self._load_new(self._write)

    def _read_scalar(self, sql: str) -> int:
        with self._read_lock:
            return int(self._read.execute(sql).fetchone()[0] or 0)

    def _load_new(self, conn: sqlite3.Connection) -> int:
        """Called with the write lock held."""
        assert self._index is not None
        cursor = conn.execute(
            "SELECT id, n_fingerprints, fingerprints FROM texts WHERE id > ? ORDER BY id",
            (self._loaded,),
        )
        return self._load_rows(cursor)

    # -- writing ----------------------------------------------------------------------------

    def add_many(self, entries: Iterable[Entry]) -> int:
        """Store new entries in one transaction; ids already stored are ignored."""
        unique: dict[str, Entry] = {}
        for entry in entries:
            unique.setdefault(entry.text_id, entry)  # the first of a repeated id wins
        if not unique or all(key in self._known for key in unique):
            return 0  # nothing new: no write transaction (an answer is often seen again)
        # the lock spans commit and publish, or another writer could load our rows twice
        with self._write_lock:
            with self._transaction() as conn:
                if self._index is not None:
                    self._load_new(conn)  # rows other processes wrote: keep the index whole
                batch = self._drop_existing(conn, list(unique.values()))
                if not batch:
                    return 0
                ids, sizes, hashes = self._insert(conn, batch)
            if self._index is not None:
                self._publish(ids, sizes, hashes)
            else:
                self._count += len(batch)
            self._remember_keys(e.text_id for e in batch)
        return len(batch)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._write
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _drop_existing(self, conn: sqlite3.Connection, batch: list[Entry]) -> list[Entry]:
        existing: set[str] = set()
        for keys in _chunks([e.text_id for e in batch]):
            marks = ",".join("?" * len(keys))
            sql = f"SELECT key FROM texts WHERE key IN ({marks})"
            existing.update(k for (k,) in conn.execute(sql, keys))
        self._remember_keys(existing)
        return [e for e in batch if e.text_id not in existing]

    def _insert(
        self, conn: sqlite3.Connection, batch: list[Entry]
    ) -> tuple[np.ndarray, np.ndarray, Fingerprints]:
        first = int(conn.execute("SELECT coalesce(max(id), 0) FROM texts").fetchone()[0]) + 1
        ids = np.arange(first, first + len(batch), dtype=np.int32)
        sizes = np.array([len(e.fingerprints) for e in batch], dtype=np.int32)
        conn.executemany(
            "INSERT INTO texts (id, key, n_fingerprints, label_json, kind, source, created, "
            "fingerprints) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    int(row_id),
                    e.text_id,
                    len(e.fingerprints),
                    label_json(e.label),
                    e.meta.kind.value,
                    e.meta.source,
                    e.meta.created,
                    e.fingerprints.astype("<i8").tobytes(),
                )
                for row_id, e in zip(ids, batch, strict=True)
            ),
        )
        hashes = (
            np.concatenate([e.fingerprints for e in batch]).astype(np.int64)
            if sizes.sum()
            else np.empty(0, dtype=np.int64)
        )
        if self.postings:
            rows = np.repeat(ids, sizes)
            order = np.argsort(hashes, kind="stable")  # B-tree inserts in key order are cheaper
            conn.executemany(
                "INSERT OR IGNORE INTO fingerprints (hash, text_id) VALUES (?, ?)",
                zip(hashes[order].tolist(), rows[order].tolist(), strict=True),
            )
        return ids, sizes, hashes

    # -- reading ----------------------------------------------------------------------------

    def _candidates_sql(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[tuple[int, int, int]]:
        sql = """
            WITH q(hash) AS (SELECT value FROM json_each(?)),
            rare(hash) AS (
                SELECT f.hash FROM fingerprints f JOIN q ON f.hash = q.hash
                GROUP BY f.hash HAVING count(*) <= ?
            ),
            shared(row, n) AS (
                SELECT f.text_id, count(*) FROM fingerprints f JOIN rare ON f.hash = rare.hash
                GROUP BY f.text_id
            )
            SELECT shared.row, shared.n, t.n_fingerprints
            FROM shared JOIN texts t ON t.id = shared.row
            WHERE shared.n >= ? * t.n_fingerprints - 1e-9
              AND shared.n >= min(?, t.n_fingerprints)
        """
        args = (
            json.dumps(fingerprints.tolist()),
            options.max_df,
            options.threshold,
            options.min_matches,
        )
        with self._read_lock:
            candidates = [tuple(r) for r in self._read.execute(sql, args)]
        return sorted(candidates, key=lambda c: (-c[1] / c[2], -c[1], c[0]))

    def _label_texts(self) -> list[str]:
        with self._read_lock:
            rows = self._read.execute("SELECT DISTINCT label_json FROM texts").fetchall()
        return [row[0] for row in rows]

    def _fetch_metas(self, row_ids: list[int]) -> Sequence[MetaRow]:
        marks = ",".join("?" * len(row_ids))
        sql = f"SELECT {META_COLUMNS} FROM texts WHERE id IN ({marks})"
        with self._read_lock:
            return self._read.execute(sql, row_ids).fetchall()

    def get(self, text_id: str) -> tuple[Label, TextMeta, int] | None:
        sql = f"SELECT {META_COLUMNS} FROM texts WHERE key = ?"
        with self._read_lock:
            row = self._read.execute(sql, (text_id,)).fetchone()
        if row is None:
            return None
        _, _, label_text, kind, source, created, size = row
        return self._label(label_text), TextMeta(kind=kind, source=source, created=created), size

    # -- housekeeping -----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes, for benchmarks and operators."""
        disk = 0
        if not self._in_memory:
            disk = sum(
                p.stat().st_size
                for p in Path(self.path).parent.glob(Path(self.path).name + "*")
                if p.is_file()
            )
        index = self._index
        return {
            "texts": self._count,
            "index_postings": len(index) if index is not None else 0,
            "index_bytes": (index.nbytes + self._sizes.nbytes) if index is not None else 0,
            "index_compared_bits": index.compared_bits if index is not None else 64,
            "disk_bytes": disk,
        }

    def close(self) -> None:
        with self._write_lock:
            if self._read is not self._write:
                self._read.close()
            self._write.close()
