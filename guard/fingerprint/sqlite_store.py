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
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import sqlite_utils

from labelgate.guard.fingerprint.memindex import MemoryIndex
from labelgate.guard.fingerprint.store import (
    Entry,
    LookupOptions,
    Match,
    Query,
    StoreBase,
    TextMeta,
    label_json,
)
from labelgate.guard.fingerprint.winnow import (
    DEFAULT_PARAMS,
    SCHEME_VERSION,
    Fingerprints,
    WinnowParams,
)
from labelgate.guard.items import ItemKind
from labelgate.guard.labels import Label, Lattice

_SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit on old builds
_META_COLUMNS = "id, key, label_json, kind, source, created, n_fingerprints"
_META_CACHE_ROWS = 65_536  # stored rows never change: their (key, label, meta) are cached
_ANSWER_CACHE_SIZE = 1024
_RUN_CANDIDATES = 64  # stored texts examined for a copied run, most shared fingerprints first
_log = logging.getLogger(__name__)


def _connect(path: str) -> sqlite3.Connection:
    # autocommit: transactions are explicit (BEGIN IMMEDIATE) so their extent is obvious
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _chunks(items: list[str], size: int = _SQL_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteFingerprintStore(StoreBase):
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
        self.lattice = lattice or Lattice()
        self._in_memory = self.path == ":memory:"
        self._write = _connect(self.path)
        # one connection for ":memory:" (a second one would open another, empty database)
        self._read = self._write if self._in_memory else _connect(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = self._write_lock if self._in_memory else threading.Lock()
        self._labels: dict[str, Label] = {}
        self._meta: dict[int, tuple[str, Label, TextMeta]] = {}  # row id -> key, label, meta
        self._known: set[str] = set()  # keys known to be stored (ids are never removed)
        # Lookups answered from the memory index since it last changed: the same messages come
        # back every turn; any new row (``_publish``) bumps the generation and voids them all.
        self._generation = 0
        self._answers: dict[tuple[bytes, int, LookupOptions], tuple[int, list[Match]]] = {}
        self._legacy: list[tuple[WinnowParams, int]] = []  # (old scheme, its last row)
        self._index = MemoryIndex() if memory_index else None
        self._sizes = np.zeros(1024, dtype=np.int32)  # n_fingerprints by row id
        self._loaded = 0  # highest row id in the memory index
        self._count = 0
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

    @property
    def also_schemes(self) -> tuple[int, ...]:
        return tuple(sorted({old.version for old, _ in self._legacy} - {self.params.version}))

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
        ids: list[int] = []
        sizes: list[int] = []
        blobs: list[bytes] = []
        for row_id, size, blob in cursor:
            ids.append(row_id)
            sizes.append(size)
            blobs.append(blob)
        if ids:
            hashes = np.frombuffer(b"".join(blobs), dtype="<i8").astype(np.int64)
            self._publish(np.array(ids, dtype=np.int32), np.array(sizes, dtype=np.int32), hashes)
        return len(ids)

    def _publish(self, ids: np.ndarray, sizes: np.ndarray, hashes: Fingerprints) -> None:
        """Make rows visible to lookups: sizes first, then the index that refers to them."""
        assert self._index is not None
        top = int(ids.max())
        if top >= len(self._sizes):
            grown = np.zeros(max(top + 1, 2 * len(self._sizes)), dtype=np.int32)
            grown[: len(self._sizes)] = self._sizes
            grown[ids] = sizes
            self._sizes = grown
        else:
            self._sizes[ids] = sizes
        rows = np.repeat(ids, sizes)
        if self._loaded == 0 and len(self._index) == 0:
            self._index.load(hashes, rows)
        else:
            self._index.append(hashes, rows)
        self._loaded = max(self._loaded, top)
        self._count += len(ids)
        self._generation += 1

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

    def _remember_keys(self, keys: Iterable[str]) -> None:
        if len(self._known) > _META_CACHE_ROWS:
            self._known = set()  # a miss only costs the write transaction it used to
        self._known.update(keys)

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

    def lookup_fingerprints(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[Match]:
        if len(fingerprints) == 0:
            return []
        if self._index is None:
            return self._ranked(self._candidates_sql(fingerprints, options), options, fingerprints)
        generation = self._generation  # read first: a row published meanwhile voids the answer
        key = (np.ascontiguousarray(fingerprints, dtype=np.int64).tobytes(), 0, options)
        cached = self._answers.get(key)
        if cached is not None and cached[0] == generation:
            return list(cached[1])
        rows, counts = self._shares(fingerprints, options)
        found = self._ranked(self._passing(rows, counts, options), options, fingerprints)
        self._remember(key, generation, found)
        return list(found)

    def lookup_query(self, query: Query, options: LookupOptions) -> list[Match]:
        """By share (``threshold``), and by copied run (``run_words``) through the memory
        index: a stored text whose fingerprints the new text holds at least two of, at most
        ``w`` k-grams apart (a copied part holds one in every ``w``), spanning ``run_words``."""
        if self._index is None or options.run_words is None or len(query.kgrams) < 2:
            return self.lookup_fingerprints(query.fingerprints, options)
        generation = self._generation
        key = (query.kgrams.tobytes(), len(query.fingerprints), options)
        cached = self._answers.get(key)
        if cached is not None and cached[0] == generation:
            return list(cached[1])
        rows, counts = self._shares(query.fingerprints, options)
        passing = self._passing(rows, counts, options)
        runs = self._runs(query, rows, counts, {c[0] for c in passing}, options)
        extra = [(row, shared, int(self._sizes[row])) for row, (shared, _) in runs.items()]
        candidates = sorted(passing + extra, key=lambda c: (-c[1] / c[2], -c[1], c[0]))
        lengths = {row: words for row, (_, words) in runs.items()}
        found = self._ranked(candidates, options, query.fingerprints, lengths)
        self._remember(key, generation, found)
        return list(found)

    def _remember(
        self, key: tuple[bytes, int, LookupOptions], generation: int, found: list[Match]
    ) -> None:
        if len(self._answers) >= _ANSWER_CACHE_SIZE:
            self._answers.clear()
        self._answers[key] = (generation, found)

    def _runs(
        self,
        query: Query,
        rows: np.ndarray,
        counts: np.ndarray,
        passed: set[int],
        options: LookupOptions,
    ) -> dict[int, tuple[int, int]]:
        """Rows not found by share that the text copies a run from: {row: (shared, words)}."""
        assert self._index is not None and options.run_words is not None
        maybe = counts >= 2
        if not maybe.any():
            return {}
        order = np.argsort(-counts[maybe], kind="stable")[:_RUN_CANDIDATES]
        wanted = [r for r in rows[maybe][order].tolist() if r not in passed]
        if not wanted:
            return {}
        max_df = min(options.run_max_df, options.max_df)
        index, held_by = self._index.postings(query.fingerprints, max_df)
        keep = np.isin(held_by, wanted)
        index, held_by = index[keep], held_by[keep]
        k, found = self.params.k, {}
        for row in np.unique(held_by).tolist():
            shared = query.fingerprints[index[held_by == row]]
            if len(shared) < 2:
                continue
            at = np.flatnonzero(np.isin(query.kgrams, shared))  # where, in the new text
            cuts = np.flatnonzero(np.diff(at) > self._window(row))
            firsts = np.concatenate(([0], cuts + 1))
            lasts = np.concatenate((cuts, [len(at) - 1]))
            best = 0
            for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
                words = int(at[last] - at[first]) + k
                chain = query.kgrams[at[first : last + 1]]
                if words > best and words >= options.run_words and len(set(chain.tolist())) > 1:
                    best = words
            if best:
                found[row] = (len(shared), best)
        return found

    def _window(self, row: int) -> int:
        """``w`` of the scheme row ``row`` was written with."""
        for old, last in self._legacy:
            if row <= last:
                return old.w
        return self.params.w

    def _ranked(
        self,
        candidates: list[tuple[int, int, int]],
        options: LookupOptions,
        fingerprints: Fingerprints,
        runs: dict[int, int] | None = None,
    ) -> list[Match]:
        """Matches of candidates given best first (containment, shared count, then row);
        ``runs``: the copied run's words of rows found by one."""
        if not candidates:
            return []
        if options.one_per_label:
            return self._best_per_label(candidates, len(fingerprints), options.limit, runs)
        if options.limit is not None:
            candidates = candidates[: options.limit]
        return self._matches(candidates, len(fingerprints), runs=runs)

    def _best_per_label(
        self,
        candidates: list[tuple[int, int, int]],
        n_query: int,
        limit: int | None,
        runs: dict[int, int] | None = None,
    ) -> list[Match]:
        """The first (best) candidate of each label, counting the others it stands for."""
        metas = self._row_metas([c[0] for c in candidates])
        # By identity: labels are parsed once per stored JSON (``_label``), and hashing a
        # Label hundreds of times cost more than the lookup itself.
        best: dict[int, tuple[int, int, int]] = {}
        more: Counter[int] = Counter()
        for candidate in candidates:
            label = id(metas[candidate[0]][1])
            if label in best:
                more[label] += 1
            else:
                best[label] = candidate
        kept = list(best.values())[:limit]
        matches = self._matches(kept, n_query, metas, runs)
        return [replace(m, also=more[id(m.label)]) for m in matches]

    def _shares(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, shared fingerprints) of every row sharing any (not boilerplate)."""
        assert self._index is not None
        return self._index.lookup(fingerprints, options.max_df)

    def _passing(
        self, rows: np.ndarray, counts: np.ndarray, options: LookupOptions
    ) -> list[tuple[int, int, int]]:
        """(row, shared, n_fingerprints) of rows passing the thresholds, best first."""
        if len(rows) == 0:  # the usual answer for a new text: no need to rank nothing
            return []
        sizes = self._sizes[rows]
        need = np.minimum(options.min_matches, sizes)
        ok = (counts >= options.threshold * sizes - 1e-9) & (counts >= need)
        rows, counts, sizes = rows[ok], counts[ok], sizes[ok]
        best_first = np.lexsort((rows, -counts, -(counts / sizes)))  # the last key leads
        rows, counts, sizes = rows[best_first], counts[best_first], sizes[best_first]
        return list(zip(rows.tolist(), counts.tolist(), sizes.tolist(), strict=True))

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

    def _matches(
        self,
        candidates: list[tuple[int, int, int]],
        n_query: int,
        metas: dict[int, tuple[str, Label, TextMeta]] | None = None,
        runs: dict[int, int] | None = None,
    ) -> list[Match]:
        """Candidates (never none: ``_ranked`` returns early) as matches, in order."""
        metas = metas or self._row_metas([c[0] for c in candidates])
        runs = runs or {}
        matches = []
        for row_id, shared, size in candidates:
            key, label, meta = metas[row_id]
            matches.append(
                Match(
                    text_id=key,
                    label=label,
                    containment=shared / size,
                    coverage=shared / n_query,
                    matched=shared,
                    meta=meta,
                    run=runs.get(row_id, 0),
                )
            )
        return matches

    def _row_metas(self, row_ids: list[int]) -> dict[int, tuple[str, Label, TextMeta]]:
        """(key, label, meta) by row id; SQLite is read only for rows not seen before."""
        cache = self._meta  # shared by threads: only single (atomic) dict operations
        found = {r: m for r in row_ids if (m := cache.get(r)) is not None}
        missing = [r for r in row_ids if r not in found]
        if not missing:
            return found
        marks = ",".join("?" * len(missing))
        sql = f"SELECT {_META_COLUMNS} FROM texts WHERE id IN ({marks})"
        with self._read_lock:
            rows = self._read.execute(sql, missing).fetchall()
        if len(cache) + len(rows) > _META_CACHE_ROWS:
            cache.clear()  # crude, but rare, and a miss only costs one read
        for row_id, key, label_text, kind, source, created, _ in rows:
            meta = TextMeta(kind=ItemKind(kind), source=source, created=created)
            found[row_id] = cache[row_id] = (key, self._label(label_text), meta)
        return found

    def _label(self, text: str) -> Label:
        label = self._labels.get(text)
        if label is None:  # few distinct labels: parse each once
            label = self._labels[text] = self.lattice.parse(json.loads(text))
        return label

    def get(self, text_id: str) -> tuple[Label, TextMeta, int] | None:
        sql = f"SELECT {_META_COLUMNS} FROM texts WHERE key = ?"
        with self._read_lock:
            row = self._read.execute(sql, (text_id,)).fetchone()
        if row is None:
            return None
        _, _, label_text, kind, source, created, size = row
        return self._label(label_text), TextMeta(kind=kind, source=source, created=created), size

    # -- housekeeping -----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

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
