"""An in-memory inverted index from fingerprint to stored-text rows, for sub-millisecond lookup.

Each posting (fingerprint, row) is packed into one uint64 *key*: the fingerprint's top
``64 - row_bits`` bits (sign bit flipped, so unsigned order is the fingerprints' signed order)
above the row number. Sorting the keys with ``np.sort`` (fast, no ``argsort`` + gathers) groups
the postings of a fingerprint together, and halves the memory of separate hash and row arrays.
The price: fingerprints are compared on their top ``64 - row_bits`` bits only (``row_bits`` is
one more than the largest row needs, at least 20: 43 bits compared at 10^6 texts), so a query
fingerprint meets an unrelated posting with probability about ``postings / 2**(64 - row_bits)``;
at 10^6 texts (44 M postings) and 150-fingerprint queries, one stray shared fingerprint per
~1,300 lookups, which ``min_matches`` and the containment threshold absorb.

Keys live in three sorted runs: a large ``main`` run, a ``delta`` run and a small ``recent``
run that absorbs appends. Each append rebuilds only ``recent``; when it passes ``recent_limit``
keys it is merged into the delta, and when the delta grows past a fraction of main the two are
merged (``np.insert`` at ``searchsorted`` positions: linear, not a re-sort). Without the recent
run every append rebuilt the whole delta, up to a million keys: 8 ms an append at 300,000.
The main and delta runs have a prefix table (where each bucket of keys, by their top bits,
begins), so a lookup finds a fingerprint's postings with two array reads instead of a binary
search of ~25 dependent cache misses. The recent run, small and rebuilt at every append, has
none: a binary search over a few thousand keys stays in cache, and building the table was
most of an append's cost.

A presence filter (``_Presence``, a one-hash Bloom filter) drops the query fingerprints no
posting can hold before any run is searched; small queries run as Python loops (``FEW``).

Thread-safety: one writer at a time (callers serialise ``load``/``append``), any number of
readers. A reader takes the current :class:`_Runs` snapshot with one attribute read (atomic in
CPython) and never sees a half-built index; a writer builds new arrays, then publishes them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
UInt64s = npt.NDArray[np.uint64]

_SIGN = np.uint64(1 << 63)
_NONE = np.empty(0, dtype=np.int32)
_NONE.flags.writeable = False
_BIAS = 1 << 63  # the Python-int form of ``_biased``: a signed hash plus 2**63
# Up to FEW query fingerprints, a lookup filters them (``_Presence``) in a Python loop, and
# when at most FEW_FOUND remain, searches for them in Python loops over memoryviews of the
# arrays: a prompt's dozen fingerprints took ~80 numpy calls (~2 us each) in the three runs.
FEW = 64
FEW_FOUND = 16
_MIN_ROW_BITS = 20  # packing changes only past a million rows, and then at every doubling
_MAX_PRESENCE_BITS = 30  # 128 MiB: reached at 32 million postings (about 700,000 texts)
_CHUNK = 1 << 20


def _biased(hashes: Int64s) -> UInt64s:
    return hashes.view(np.uint64) ^ _SIGN


def _pack(hashes: Int64s, rows: Int32s, row_bits: int) -> UInt64s:
    rb = np.uint64(row_bits)
    return ((_biased(hashes) >> rb) << rb) | rows.astype(np.uint64)


def _repack(keys: UInt64s, old_bits: int, new_bits: int) -> UInt64s:
    rows = keys & np.uint64((1 << old_bits) - 1)
    nb = np.uint64(new_bits)
    return np.sort(((keys >> nb) << nb) | rows)


def _gather_positions(lo: Int64s, hi: Int64s) -> tuple[Int64s, Int64s]:
    """(positions lo[i]..hi[i]-1 for every i, the i of each position), without a Python loop."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(lo)), lengths)
    offsets = np.cumsum(lengths) - lengths
    return lo[owner] + np.arange(total) - offsets[owner], owner


@dataclass(frozen=True, slots=True)
class _Run:
    """Sorted packed keys, with a prefix table over their top bits (``starts``) or, for the
    small recent run, none (found by binary search)."""

    keys: UInt64s
    starts: npt.NDArray[np.uint32] | Int64s | None  # None: found by binary search
    shift: np.uint64
    row_bits: int
    # The same arrays, read element by element as Python ints (``find_few``)
    key_view: memoryview = field(init=False, repr=False, compare=False)
    start_view: memoryview | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # ``.data``: the array's buffer as a memoryview, what ``memoryview(array)`` gives
        object.__setattr__(self, "key_view", self.keys.data)
        starts = None if self.starts is None else self.starts.data
        object.__setattr__(self, "start_view", starts)

    @classmethod
    def build(cls, keys: UInt64s, row_bits: int, *, table: bool = True) -> _Run:
        """From sorted keys."""
        if not table:
            return cls(keys, None, np.uint64(0), row_bits)
        # about two postings per bucket: a small table and short scans
        bits = int(min(26, max(4, np.log2(max(len(keys), 1)) - 1)))
        shift = np.uint64(64 - bits)
        counts = np.bincount((keys >> shift).astype(np.int64), minlength=1 << bits)
        size = (1 << bits) + 1
        starts = np.zeros(size, np.uint32) if len(keys) < 2**32 else np.zeros(size, np.int64)
        np.cumsum(counts, out=starts[1:])
        return cls(keys, starts, shift, row_bits)

    @classmethod
    def empty(cls, row_bits: int, *, table: bool = True) -> _Run:
        return cls.build(np.empty(0, dtype=np.uint64), row_bits, table=table)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + (0 if self.starts is None else self.starts.nbytes)

    def find(self, query: UInt64s) -> tuple[Int64s, Int32s]:
        """(index in query, row) for every posting of every (biased) query fingerprint."""
        if len(self.keys) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        if self.starts is None:
            return self._search(query)
        bucket = (query >> self.shift).astype(np.int64)
        lo = self.starts[bucket].astype(np.int64)
        hi = self.starts[bucket + 1].astype(np.int64)
        positions, owner = _gather_positions(lo, hi)
        keys = self.keys[positions]
        rb = np.uint64(self.row_bits)
        same = (keys >> rb) == (query[owner] >> rb)
        rows = (keys[same] & np.uint64((1 << self.row_bits) - 1)).astype(np.int32)
        return owner[same], rows

    def find_few(self, query: list[int]) -> list[tuple[int, int]]:
        """``find`` for a few (biased) fingerprints given as ints: (index in query, row)."""
        keys, rb = self.key_view, self.row_bits
        mask, found = (1 << rb) - 1, []
        if self.start_view is None:
            n = len(keys)
            for i, q in enumerate(query):
                top = q >> rb
                j = bisect_left(keys, top << rb)
                while j < n and keys[j] >> rb == top:
                    found.append((i, keys[j] & mask))
                    j += 1
            return found
        starts, shift = self.start_view, int(self.shift)
        for i, q in enumerate(query):
            top, bucket = q >> rb, q >> shift
            for j in range(starts[bucket], starts[bucket + 1]):
                if keys[j] >> rb == top:
                    found.append((i, keys[j] & mask))
        return found

    def _search(self, query: UInt64s) -> tuple[Int64s, Int32s]:
        """``find`` by binary search: each fingerprint's postings are the keys between its
        bits with row 0 and with every row bit set."""
        rb = np.uint64(self.row_bits)
        low = (query >> rb) << rb
        lo = np.searchsorted(self.keys, low, side="left")
        hi = np.searchsorted(self.keys, low | np.uint64((1 << self.row_bits) - 1), side="right")
        positions, owner = _gather_positions(lo, hi)
        rows = (self.keys[positions] & np.uint64((1 << self.row_bits) - 1)).astype(np.int32)
        return owner, rows

    def merged(self, keys: UInt64s, *, table: bool = True) -> _Run:
        """A new run with these sorted keys inserted, in linear time."""
        at = np.searchsorted(self.keys, keys)
        return _Run.build(np.insert(self.keys, at, keys), self.row_bits, table=table)

    def repacked(self, row_bits: int) -> _Run:
        keys = _repack(self.keys, self.row_bits, row_bits)
        return _Run.build(keys, row_bits, table=self.starts is not None)


@dataclass(frozen=True, slots=True)
class _Presence:
    """One bit per slot of a fingerprint's top bits, set once a posting holds a fingerprint of
    that slot: a Bloom filter with one hash, and no false negatives. Most of a new text's
    fingerprints are in no stored text; a lookup drops those for a few vector operations, and
    a text sharing none with the store costs no search at all.

    ``bits`` is a power of two, 32 to 64 per posting up to 2**30 bits (32 million postings),
    so a fingerprint in no stored text finds its bit set less than once in 32. The slot is the
    top ``log2(bits)`` bits (at most 30), which a packed key keeps (rows are int32: at most 32
    row bits), whatever its packing: sorted keys give sorted slots, and setting their bits
    needs one OR per byte touched, no scattered writes."""

    flags: npt.NDArray[np.uint8]  # little bit order: slot s is bit s % 8 of byte s // 8
    view: memoryview  # the same bytes, read as Python ints (``possible_few``)
    shift: int  # slot = value >> shift

    @classmethod
    def of(cls, keys: Iterable[UInt64s], postings: int) -> _Presence:
        """For these packed keys, sized for ``postings``."""
        log2 = min(_MAX_PRESENCE_BITS, max(20, (32 * postings).bit_length()))
        flags = np.zeros((1 << log2) // 8, dtype=np.uint8)
        presence = cls(flags, flags.data, 64 - log2)
        for some in keys:
            presence.add(some)
        return presence

    @property
    def bits(self) -> int:
        return len(self.flags) * 8

    def add(self, keys: UInt64s) -> None:
        """Set the bits of packed keys, in place (a reader seeing one early only searches);
        sorted keys, as every run's are, make one OR per byte touched."""
        for start in range(0, len(keys), _CHUNK):  # bounded temporaries when loading millions
            slots = keys[start : start + _CHUNK] >> np.uint64(self.shift)
            byte = (slots >> np.uint64(3)).astype(np.intp)
            bit = np.left_shift(1, slots & np.uint64(7), dtype=np.uint8, casting="unsafe")
            first = np.flatnonzero(np.concatenate(([True], byte[1:] != byte[:-1])))
            # ``.at``: a byte met twice (keys not sorted) keeps the bits of both
            np.bitwise_or.at(self.flags, byte[first], np.bitwise_or.reduceat(bit, first))

    def possible(self, biased: UInt64s) -> npt.NDArray[np.bool_]:
        """Which (biased) fingerprints may have postings."""
        slots = biased >> np.uint64(self.shift)
        byte = self.flags[(slots >> np.uint64(3)).astype(np.intp)]
        return ((byte >> (slots & np.uint64(7)).astype(np.uint8)) & 1).astype(bool)

    def possible_few(self, biased: list[int]) -> list[int]:
        """``possible`` of a few fingerprints given as ints: the ones that may have postings."""
        flags, shift = self.view, self.shift
        return [q for q in biased if flags[q >> shift >> 3] >> (q >> shift & 7) & 1]


@dataclass(frozen=True, slots=True)
class _Runs:
    main: _Run
    delta: _Run
    recent: _Run
    presence: _Presence

    @property
    def all(self) -> tuple[_Run, _Run, _Run]:
        return (self.main, self.delta, self.recent)

    def repacked(self, row_bits: int) -> _Runs:
        """The runs repacked for ``row_bits`` row bits; the presence filter (top bits) stays."""
        main, delta, recent = (run.repacked(row_bits) for run in self.all)
        return _Runs(main, delta, recent, self.presence)


def _row_bits(max_row: int) -> int:
    return max(_MIN_ROW_BITS, int(max_row).bit_length() + 1)


class MemoryIndex:
    """fingerprint -> rows holding it; ``lookup`` counts shared fingerprints per row."""

    def __init__(
        self, merge_fraction: float = 0.125, min_delta: int = 1 << 20, recent_limit: int = 1 << 14
    ) -> None:
        empty, recent = _Run.empty(_MIN_ROW_BITS), _Run.empty(_MIN_ROW_BITS, table=False)
        self._runs = _Runs(empty, empty, recent, _Presence.of([], 0))
        self._merge_fraction = merge_fraction
        self._min_delta = min_delta
        self._recent_limit = recent_limit

    def __len__(self) -> int:
        return sum(len(run.keys) for run in self._runs.all)

    @property
    def nbytes(self) -> int:
        runs = self._runs
        return sum(run.nbytes for run in runs.all) + runs.presence.flags.nbytes

    @property
    def compared_bits(self) -> int:
        """How many bits of a fingerprint the index compares."""
        return 64 - self._runs.main.row_bits

    def load(self, hashes: Int64s, rows: Int32s) -> None:
        """Replace the index with these postings (at open)."""
        bits = _row_bits(int(rows.max()) if len(rows) else 0)
        main = _Run.build(np.sort(_pack(hashes, rows, bits)), bits)
        presence = _Presence.of([main.keys], len(main.keys))
        self._runs = _Runs(main, _Run.empty(bits), _Run.empty(bits, table=False), presence)

    def append(self, hashes: Int64s, rows: Int32s) -> None:
        """Add postings; one writer at a time."""
        runs = self._runs
        bits = runs.main.row_bits
        if len(rows) and int(rows.max()) >= 1 << bits:  # rows outgrew the packing: widen it
            bits = _row_bits(int(rows.max()))
            runs = runs.repacked(bits)
        main, delta = runs.main, runs.delta
        keys = np.sort(_pack(hashes, rows, bits))
        postings = len(self) + len(keys)
        if 32 * postings > runs.presence.bits and runs.presence.bits < 1 << _MAX_PRESENCE_BITS:
            presence = _Presence.of([*(run.keys for run in runs.all), keys], postings)
        else:
            presence = runs.presence
            presence.add(keys)  # before the keys can be found
        recent = runs.recent.merged(keys, table=False)
        if len(recent.keys) > self._recent_limit:
            delta, recent = delta.merged(recent.keys), _Run.empty(bits, table=False)
        if len(delta.keys) > max(self._min_delta, self._merge_fraction * len(main.keys)):
            main, delta = main.merged(delta.keys), _Run.empty(bits)
        self._runs = _Runs(main, delta, recent, presence)

    def lookup(self, query: Int64s, max_df: int) -> tuple[Int32s, Int32s]:
        """(rows, shared fingerprint counts) for rows sharing any of the unique ``query`` hashes.

        Fingerprints held by more than ``max_df`` rows are skipped as boilerplate.
        """
        runs = self._runs  # one snapshot: a writer publishes a new one
        if len(query) <= FEW:
            few = runs.presence.possible_few([q + _BIAS for q in query.tolist()])
            if len(few) <= FEW_FOUND:
                return self._lookup_few(runs, few, max_df) if few else (_NONE, _NONE)
            biased = np.array(few, dtype=np.uint64)
        else:
            biased = _biased(query)
            biased = biased[runs.presence.possible(biased)]
        found = [run.find(biased) for run in runs.all if len(run.keys)] if len(biased) else []
        if not found:
            return _NONE, _NONE
        owner = np.concatenate([o for o, _ in found])
        rows = np.concatenate([r for _, r in found])
        if len(rows) == 0:
            return _NONE, _NONE
        df = np.bincount(owner, minlength=len(biased))
        kept = np.sort(rows[df[owner] <= max_df])
        if len(kept) == 0:
            return _NONE, _NONE
        starts = np.flatnonzero(np.concatenate(([True], kept[1:] != kept[:-1])))
        counts = np.diff(np.append(starts, len(kept))).astype(np.int32)
        return kept[starts], counts

    def postings(self, query: Int64s, max_df: int) -> tuple[Int64s, Int32s]:
        """(index in ``query``, row) of every posting of the unique ``query`` hashes held by
        at most ``max_df`` rows: which stored text holds which query fingerprint."""
        runs = self._runs
        biased = _biased(query)
        keep = np.flatnonzero(runs.presence.possible(biased))
        found = [run.find(biased[keep]) for run in runs.all if len(run.keys)] if len(keep) else []
        if not found:
            return np.empty(0, dtype=np.int64), _NONE
        owner = np.concatenate([o for o, _ in found])
        rows = np.concatenate([r for _, r in found])
        df = np.bincount(owner, minlength=len(keep))
        rare = df[owner] <= max_df
        return keep[owner[rare]], rows[rare]

    @staticmethod
    def _lookup_few(runs: _Runs, biased: list[int], max_df: int) -> tuple[Int32s, Int32s]:
        """``lookup`` of a few (biased) fingerprints, by ``find_few``."""
        found = [hit for run in runs.all if len(run.keys) for hit in run.find_few(biased)]
        df = Counter(i for i, _ in found)
        shared = Counter(row for i, row in found if df[i] <= max_df)
        rows = sorted(shared)
        return (
            np.array(rows, dtype=np.int32),
            np.array([shared[row] for row in rows], dtype=np.int32),
        )
