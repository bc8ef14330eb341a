"""Stores whose lookups go through a :class:`MemoryIndex`, whatever keeps their rows.

A backend (SQLite, PostgreSQL) keeps each stored text as a row with a dense integer id, its
sorted fingerprints, its label and metadata. This base class holds what does not depend on the
database: the memory index over every loaded row (``_load_rows``, ``_publish``), lookups by
share and by copied run, ranking, and the caches of row metadata and recent answers. A backend
writes rows, loads the rows it has not seen (its own and other processes'), and reads the
metadata of matched rows (``_fetch_metas``); with no memory index it looks up in SQL
(``_candidates_sql``).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from labelgate.guard.fingerprint.memindex import MemoryIndex
from labelgate.guard.fingerprint.store import (
    LookupOptions,
    Match,
    Query,
    StoreBase,
    TextMeta,
)
from labelgate.guard.fingerprint.winnow import Fingerprints, WinnowParams
from labelgate.guard.items import ItemKind
from labelgate.guard.labels import Label, Lattice

META_COLUMNS = "id, key, label_json, kind, source, created, n_fingerprints"
# (id, key, label_json, kind, source, created, n_fingerprints), as META_COLUMNS selects
MetaRow = tuple[int, str, str, str, str | None, str, int]
_META_CACHE_ROWS = 65_536  # stored rows never change: their (key, label, meta) are cached
_ANSWER_CACHE_SIZE = 1024
_RUN_CANDIDATES = 64  # stored texts examined for a copied run, most shared fingerprints first


class IndexedStore(StoreBase):
    """Lookups through a memory index of every loaded row (or SQL, without one)."""

    def _init_index(self, lattice: Lattice | None, memory_index: bool) -> None:
        """The state a backend's ``__init__`` sets up before it loads any row."""
        self.lattice = lattice or Lattice()
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

    @abstractmethod
    def _fetch_metas(self, row_ids: list[int]) -> Sequence[MetaRow]:
        """The ``META_COLUMNS`` of these rows (read from the database)."""

    @abstractmethod
    def _label_texts(self) -> list[str]:
        """Every distinct stored ``label_json`` (a full scan: at start only)."""

    def unreadable_labels(self) -> list[str]:
        """Why stored labels cannot be read with this store's lattice (a level it does not
        know: the store was written under another policy), one reason per distinct problem;
        empty when every label reads."""
        problems: set[str] = set()
        for text in self._label_texts():
            try:
                self._label(text)
            except ValueError as exc:
                problems.add(str(exc))
        return sorted(problems)

    @abstractmethod
    def _candidates_sql(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[tuple[int, int, int]]:
        """(row, shared, n_fingerprints) passing ``options``, best first, looked up in SQL
        (a store without a memory index)."""

    @property
    def loaded(self) -> int:
        """The highest row id this process's memory index holds."""
        return self._loaded

    def _load_rows(self, rows: Iterable[tuple[int, int, bytes]]) -> int:
        """Publish rows (id, n_fingerprints, little-endian int64 blob) read from the database,
        in id order; return how many. Callers serialise loads and writes."""
        ids: list[int] = []
        sizes: list[int] = []
        blobs: list[bytes] = []
        for row_id, size, blob in rows:
            ids.append(row_id)
            sizes.append(size)
            blobs.append(bytes(blob))
        if ids:
            hashes = np.frombuffer(b"".join(blobs), dtype="<i8").astype(np.int64)
            self._publish(np.array(ids, dtype=np.int32), np.array(sizes, dtype=np.int32), hashes)
        return len(ids)

    @property
    def also_schemes(self) -> tuple[int, ...]:
        return tuple(sorted({old.version for old, _ in self._legacy} - {self.params.version}))

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

    def _remember_keys(self, keys: Iterable[str]) -> None:
        if len(self._known) > _META_CACHE_ROWS:
            self._known = set()  # a miss only costs the write transaction it used to
        self._known.update(keys)

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
        """(key, label, meta) by row id; the database is read only for rows not seen before."""
        cache = self._meta  # shared by threads: only single (atomic) dict operations
        found = {r: m for r in row_ids if (m := cache.get(r)) is not None}
        missing = [r for r in row_ids if r not in found]
        if not missing:
            return found
        rows = self._fetch_metas(missing)
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

    def __len__(self) -> int:
        return self._count
