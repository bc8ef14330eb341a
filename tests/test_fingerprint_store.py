"""The SQLite fingerprint store: matching, labels, persistence, thresholds, threads."""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from pg_fixtures import *  # noqa: F403 - fixtures

from labelgate.guard.fingerprint import (
    Entry,
    FingerprintStore,
    LookupOptions,
    SQLiteFingerprintStore,
    TextMeta,
    WinnowParams,
    content_id,
    fingerprint,
    memindex,
)
from labelgate.guard.fingerprint.memindex import MemoryIndex
from labelgate.guard.items import ItemKind, LabelOrigin
from labelgate.guard.labels import Lattice, LatticeConfig

LATTICE = Lattice(LatticeConfig(categories=["pii", "finance"]))
SECRET = LATTICE.label("confidential", "trusted", categories=["finance"], sources=["doc:payroll"])
WEB = LATTICE.label("public", "untrusted", sources=["web:evil.example"])

_rng = random.Random(11)
_WORDS = [
    "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_rng.randint(3, 9)))
    for _ in range(3000)
]


def prose(seed: int, n_words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)) + "."


PAYROLL = (
    "Payroll summary for March. Alice Martin, senior engineer, base salary 9,400 euros per "
    "month plus a retention bonus of 15,000 euros paid in two parts. Bruno Keller, analyst, "
    "7,100 euros per month; his raise to 7,600 takes effect in May after the review committee "
    "meets. Do not forward this summary outside the finance team under any circumstances."
)


def memory_store(**kwargs: object) -> SQLiteFingerprintStore:
    return SQLiteFingerprintStore(":memory:", LATTICE, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["memory-index", "sql-only", "postgres", "postgres-sql-only"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLiteFingerprintStore:
    """Every backend answers alike: SQLite and PostgreSQL (tests/pg_fixtures.py: skipped where
    no server answers), each through its memory index and by SQL alone."""
    memory_index = not request.param.endswith("sql-only")
    if request.param.startswith("postgres"):
        from labelgate.guard.fingerprint.pg_store import PostgresFingerprintStore

        dsn = request.getfixturevalue("pg_dsn")
        s = PostgresFingerprintStore(dsn, LATTICE, memory_index=memory_index)
    else:
        s = SQLiteFingerprintStore(tmp_path / "fp.db", LATTICE, memory_index=memory_index)
    yield s  # type: ignore[misc]
    s.close()


def test_is_a_fingerprint_store(store: SQLiteFingerprintStore) -> None:
    assert isinstance(store, FingerprintStore)


def test_exact_and_reformatted_copies_match_with_label(store: SQLiteFingerprintStore) -> None:
    text_id = store.add_text(PAYROLL, SECRET, meta=TextMeta(source="rag:finance"))
    variants = [
        PAYROLL,
        PAYROLL.upper(),
        PAYROLL.replace(" ", "\n"),
        PAYROLL.replace(",", "").replace(";", "."),
        "  ".join(PAYROLL.split()),
    ]
    for variant in variants:
        matches = store.lookup(variant)
        assert [m.text_id for m in matches] == [text_id]
        assert matches[0].containment == 1.0
        assert matches[0].label == SECRET
        assert matches[0].meta.source == "rag:finance"
        assert matches[0].meta.kind is ItemKind.DOCUMENT


def test_partial_copy_matches_and_unrelated_does_not(store: SQLiteFingerprintStore) -> None:
    stored = prose(1, 300)
    store.add_text(stored, SECRET, text_id="secret")
    store.add_text(prose(2, 300), WEB, text_id="web")
    words = stored.split()
    half = " ".join(words[75:225])
    query = f"{prose(3, 250)} {half} {prose(4, 250)}"
    matches = store.lookup(query)
    assert [m.text_id for m in matches] == ["secret"]
    assert 0.35 < matches[0].containment < 0.65  # about half of the stored text
    assert 0.1 < matches[0].coverage < 0.4  # which is a minority of the query
    assert store.lookup(prose(5, 600)) == []


def test_threshold_separates_partial_from_whole(store: SQLiteFingerprintStore) -> None:
    stored = prose(6, 300)
    store.add_text(stored, SECRET, text_id="s")
    quarter = " ".join(stored.split()[:75])
    query = f"{prose(7, 200)} {quarter}"
    (match,) = store.lookup(query, threshold=0.1)
    assert 0.15 < match.containment < 0.35
    by_share = LookupOptions(threshold=0.5, run_words=None)
    assert store.lookup(query, options=by_share) == []
    if store._index is not None:  # ... but 75 words copied in a row are a copied run
        (match,) = store.lookup(query, threshold=0.5)
        assert match.run >= 70
    assert store.lookup(stored, threshold=1.0)[0].containment == 1.0


def test_containment_is_of_the_stored_text(store: SQLiteFingerprintStore) -> None:
    """A short stored text inside a long query is fully contained; the reverse is not."""
    short, long = prose(8, 60), prose(9, 400)
    store.add_text(short, SECRET, text_id="short")
    (match,) = store.lookup(f"{long} {short}")
    assert match.containment == 1.0
    assert match.coverage < 0.3


def test_several_sources_all_reported_best_first(store: SQLiteFingerprintStore) -> None:
    a, b = prose(10, 200), prose(11, 200)
    store.add_text(a, SECRET, text_id="a")
    store.add_text(b, WEB, text_id="b")
    half_b = " ".join(b.split()[:100])
    matches = store.lookup(f"{a} {half_b}")
    assert [m.text_id for m in matches] == ["a", "b"]
    assert matches[0].containment > matches[1].containment
    assert LATTICE.join_all(m.label for m in matches) == SECRET | WEB
    assert len(store.lookup(f"{a} {half_b}", options=LookupOptions(limit=1))) == 1


def test_labels_round_trip_with_readers_categories_sources(tmp_path: Path) -> None:
    label = LATTICE.label(
        "secret", "untrusted", readers=["alice", "bob"], categories=["pii"], sources=["a", "b"]
    )
    with SQLiteFingerprintStore(tmp_path / "fp.db", LATTICE) as store:
        store.add(
            "x", fingerprint(PAYROLL), label, TextMeta(kind=ItemKind.OUTPUT, source="agent:2")
        )
        got = store.get("x")
    assert got is not None
    assert got[0] == label
    assert got[1].kind is ItemKind.OUTPUT
    assert got[2] == len(fingerprint(PAYROLL))


def test_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    with SQLiteFingerprintStore(path, LATTICE) as store:
        store.add_text(PAYROLL, SECRET, text_id="payroll", meta=TextMeta(source="hr"))
        store.add_text(prose(12), WEB, text_id="web")
    with SQLiteFingerprintStore(path, LATTICE) as reopened:
        assert len(reopened) == 2
        (match,) = reopened.lookup(f"{prose(13)} {PAYROLL}")
        assert (match.text_id, match.label, match.meta.source) == ("payroll", SECRET, "hr")
        reopened.add_text(prose(14), WEB, text_id="after")  # ids stay unique after reopen
        assert reopened.lookup(prose(14))[0].text_id == "after"
        assert reopened.lookup(prose(12))[0].text_id == "web"


def test_reopen_with_other_params_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    SQLiteFingerprintStore(path, LATTICE, WinnowParams(k=4, w=6)).close()
    with pytest.raises(ValueError, match="made with"):
        SQLiteFingerprintStore(path, LATTICE, WinnowParams(k=5, w=8))
    with SQLiteFingerprintStore(path, LATTICE) as store:  # None: use what the file holds
        assert store.params == WinnowParams(k=4, w=6)


def test_duplicate_ids_are_ignored_and_content_ids_dedupe() -> None:
    store = memory_store()
    fps = fingerprint(PAYROLL)
    assert store.add("x", fps, SECRET)
    assert not store.add("x", fingerprint(prose(15)), WEB)  # ids are immutable
    assert store.get("x")[0] == SECRET  # type: ignore[index]
    first = store.add_text(PAYROLL, SECRET)
    again = store.add_text(PAYROLL.upper(), SECRET)
    other = store.add_text(PAYROLL, WEB)
    assert first == again == content_id(fps, SECRET)
    assert other != first
    assert len(store) == 3
    assert {m.text_id for m in store.lookup(PAYROLL)} == {"x", first, other}


def test_add_many_in_one_batch() -> None:
    store = memory_store()
    entries = [Entry(f"t{i}", fingerprint(prose(100 + i)), WEB) for i in range(50)]
    entries.append(Entry("t0", fingerprint(prose(999)), SECRET))  # repeated id: first wins
    assert store.add_many(entries) == 50
    assert store.add_many(entries) == 0
    for i in (0, 17, 49):
        assert store.lookup(prose(100 + i))[0].text_id == f"t{i}"


def test_many_texts_memory_and_sql_agree(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    with SQLiteFingerprintStore(path, LATTICE) as store:
        for lo in range(0, 1500, 500):
            store.add_many(
                [Entry(f"t{i}", fingerprint(prose(i, 120)), WEB) for i in range(lo, lo + 500)]
            )
        queries = [f"{prose(i, 120)} {prose(10_000 + i, 300)}" for i in range(0, 1500, 97)]
        queries.append(prose(20_000, 600))
        mem = [[(m.text_id, m.matched) for m in store.lookup(q)] for q in queries]
    with SQLiteFingerprintStore(path, LATTICE, memory_index=False) as sql_store:
        sql = [[(m.text_id, m.matched) for m in sql_store.lookup(q)] for q in queries]
    assert mem == sql
    assert [ids[0][0] for ids in mem[:-1]] == [f"t{i}" for i in range(0, 1500, 97)]
    assert mem[-1] == []


def test_common_fingerprints_are_ignored() -> None:
    store = memory_store()
    boilerplate = prose(30, 40)
    for i in range(12):
        store.add_text(f"{boilerplate} {prose(40 + i, 80)}", WEB, text_id=f"mail{i}")
    matches = store.lookup(boilerplate, options=LookupOptions(max_df=10))
    assert matches == []  # the footer is in 12 texts: not evidence of any one of them
    assert len(store.lookup(boilerplate, threshold=0.05)) == 12  # default max_df keeps it


def test_min_matches_guards_against_coincidence() -> None:
    store = memory_store()
    stored = prose(50, 100)
    store.add_text(stored, SECRET, text_id="s")
    snippet = " ".join(stored.split()[:14])  # a few fingerprints
    few = LookupOptions(threshold=0.01, min_matches=12, run_words=None)
    assert store.lookup(snippet, options=few) == []
    assert store.lookup(snippet, options=LookupOptions(threshold=0.01, min_matches=1))
    (match,) = store.lookup(snippet, options=LookupOptions(min_matches=12))  # a copied run
    assert match.run >= 10


def test_short_texts_match_when_the_same() -> None:
    store = memory_store()
    store.add_text("Code word: BLUEBIRD", SECRET, text_id="code")
    assert [m.text_id for m in store.lookup("code word bluebird")] == ["code"]
    assert store.lookup("code word") == []


def test_match_provenance() -> None:
    store = memory_store()
    store.add_text(PAYROLL, SECRET, text_id="p", meta=TextMeta(source="rag:hr"))
    provenance = store.lookup(PAYROLL)[0].provenance()
    assert provenance.origin is LabelOrigin.FINGERPRINT
    assert provenance.ref == "p"
    assert "100%" in provenance.detail and "rag:hr" in provenance.detail


def test_lookup_by_fingerprints_and_empty_query() -> None:
    store = memory_store()
    store.add_text(PAYROLL, SECRET, text_id="p")
    assert store.lookup(list(fingerprint(PAYROLL)))[0].text_id == "p"
    assert store.lookup("") == []
    assert store.lookup("!!!") == []


def test_stores_hashes_not_text(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    with SQLiteFingerprintStore(path, LATTICE) as store:
        store.add_text(PAYROLL, WEB)  # (SECRET's sources name "doc:payroll")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for word in (b"Alice", b"alice", b"Payroll", b"payroll", b"retention"):
        assert word not in raw


def test_without_postings_table(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    with SQLiteFingerprintStore(path, LATTICE, postings=False) as store:
        store.add_text(PAYROLL, SECRET, text_id="p")
        assert store.lookup(PAYROLL)[0].text_id == "p"
    with pytest.raises(ValueError):
        SQLiteFingerprintStore(path, LATTICE, memory_index=False)
    with pytest.raises(ValueError, match="without the postings"):
        SQLiteFingerprintStore(path, LATTICE, postings=True)


def test_two_store_objects_on_one_file_see_each_other(tmp_path: Path) -> None:
    """As two processes would: writes load the other's rows; a reader refreshes."""
    path = tmp_path / "fp.db"
    a = SQLiteFingerprintStore(path, LATTICE)
    b = SQLiteFingerprintStore(path, LATTICE)
    a.add_text(prose(60), WEB, text_id="from-a")
    b.add_text(prose(61), SECRET, text_id="from-b")  # loads a's row first
    assert b.lookup(prose(60))[0].text_id == "from-a"
    assert a.lookup(prose(61)) == []  # a has not refreshed yet
    assert a.refresh() == 1
    assert a.lookup(prose(61))[0].label == SECRET
    a.close()
    b.close()


def test_concurrent_writer_and_readers(tmp_path: Path) -> None:
    """The proxy's pattern: one background writer, lookups from another thread."""
    store = SQLiteFingerprintStore(tmp_path / "fp.db", LATTICE)
    store.add_text(PAYROLL, SECRET, text_id="p")
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for lo in range(0, 400, 20):
                store.add_many(
                    [Entry(f"t{i}", fingerprint(prose(i, 80)), WEB) for i in range(lo, lo + 20)]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                assert store.lookup(PAYROLL)[0].text_id == "p"
                store.lookup(prose(5, 100))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(store) == 401
    assert store.lookup(prose(399, 80))[0].text_id == "t399"
    store.close()


def test_memory_index_delta_merge_and_repack() -> None:
    """Appends go to the recent run, merge into the delta, then into main, and widen the
    packing as rows grow; every posting stays findable through all of it."""
    rng = np.random.default_rng(0)
    index = MemoryIndex(merge_fraction=0.5, min_delta=64, recent_limit=25)
    postings: dict[int, set[int]] = {}
    levels: set[tuple[bool, ...]] = set()  # which of main, delta, recent held keys
    for row in range(0, 3000, 3):
        hashes = np.unique(rng.integers(-(2**63), 2**63 - 1, size=10, dtype=np.int64))
        big_row = row if row < 2000 else row + (1 << 22)  # forces a repack
        index.append(hashes, np.full(len(hashes), big_row, dtype=np.int32))
        postings[big_row] = set(hashes.tolist())
        levels.add(tuple(bool(len(run.keys)) for run in index._runs.all))
    assert index.compared_bits < 64 - 20
    for row in (0, 999, 1998, 2001 + (1 << 22), 2997 + (1 << 22)):
        query = np.array(sorted(postings[row]), dtype=np.int64)
        rows, counts = index.lookup(query, max_df=5)
        assert rows.tolist() == [row]
        assert counts.tolist() == [len(query)]
    assert len(index) == sum(len(v) for v in postings.values())
    assert (True, True, True) in levels  # all three runs were in use at once


def test_memory_index_finds_a_fingerprint_held_in_every_run() -> None:
    """A fingerprint held by a row in the main run, one in the delta and one in the recent
    run (searched without a prefix table) is found in all three, counted once per row."""
    rng = np.random.default_rng(1)
    index = MemoryIndex(merge_fraction=0.5, min_delta=64, recent_limit=25)
    shared = np.unique(rng.integers(-(2**63), 2**63 - 1, size=5, dtype=np.int64))
    holders = []
    for row in range(200):
        hashes = rng.integers(-(2**63), 2**63 - 1, size=8, dtype=np.int64)
        if row in (3, 190, 199):
            hashes = np.concatenate([hashes, shared])
            holders.append(row)
        index.append(np.unique(hashes), np.full(len(np.unique(hashes)), row, dtype=np.int32))
    runs = index._runs.all
    held = [set((run.keys & np.uint64((1 << run.row_bits) - 1)).tolist()) for run in runs]
    assert [sorted(rows & set(holders)) for rows in held] == [[3], [190], [199]]
    assert index._runs.recent.starts is None
    rows, counts = index.lookup(shared, max_df=5)
    assert rows.tolist() == holders and counts.tolist() == [len(shared)] * 3
    assert index.lookup(shared, max_df=2)[0].tolist() == []  # in more rows than max_df


def _plain_lookup(
    postings: dict[int, set[int]], query: np.ndarray, max_df: int
) -> tuple[list[int], list[int]]:
    """The reference: rows and shared counts from a plain dict of fingerprint -> rows."""
    shared: Counter[int] = Counter()
    for fp in query.tolist():
        if len(postings.get(fp, ())) <= max_df:
            shared.update(postings.get(fp, ()))
    rows = sorted(shared)
    return rows, [shared[row] for row in rows]


@pytest.mark.parametrize(
    ("few", "few_found"),
    [(0, 0), (64, 0), (64, 16), (10**6, 10**6)],
    ids=["vectors", "filter-in-python", "default", "all-python"],
)
def test_memory_index_answers_as_a_plain_inverted_index(
    monkeypatch: pytest.MonkeyPatch, few: int, few_found: int
) -> None:
    """Every way a lookup can run (vectors, Python loops, with the presence filter before
    either) gives what a plain dict gives, while rows are appended through all three runs,
    the packing widens and the presence filter grows."""
    monkeypatch.setattr(memindex, "FEW", few)
    monkeypatch.setattr(memindex, "FEW_FOUND", few_found)
    rng = np.random.default_rng(7)
    pool = rng.integers(-(2**63), 2**63 - 1, size=400, dtype=np.int64)  # shared by many rows
    index = MemoryIndex(merge_fraction=0.5, min_delta=64, recent_limit=25)
    postings: dict[int, set[int]] = defaultdict(set)
    first_bits = index._runs.presence.bits
    for n in range(2200):
        row = n if n < 2000 else n + (1 << 21)  # forces a repack
        fresh = rng.integers(-(2**63), 2**63 - 1, size=16, dtype=np.int64)
        hashes = np.unique(np.concatenate([fresh, rng.choice(pool, size=3)]))
        index.append(hashes, np.full(len(hashes), row, dtype=np.int32))
        for fp in hashes.tolist():
            postings[fp].add(row)
        if n % 100 == 99:
            stored = np.array(list(postings), dtype=np.int64)
            for size in (1, 5, 14, 30, 63, 200):
                query = np.unique(
                    np.concatenate(
                        [
                            rng.choice(stored, size=size // 2 + 1),
                            rng.integers(-(2**63), 2**63 - 1, size=size // 2, dtype=np.int64),
                        ]
                    )
                )
                for max_df in (2, 1000):
                    rows, counts = index.lookup(query, max_df)
                    assert (rows.tolist(), counts.tolist()) == _plain_lookup(
                        postings, query, max_df
                    )
    assert index._runs.presence.bits > first_bits  # it grew
    assert index.compared_bits < 64 - 20  # repacked


def test_presence_filter_drops_fingerprints_in_no_stored_text() -> None:
    """A query of fingerprints no stored text holds mostly has its bits clear: the filter
    keeps about one in 32 to 64 of them, and every stored one."""
    rng = np.random.default_rng(3)
    index = MemoryIndex()
    stored = rng.integers(-(2**63), 2**63 - 1, size=30_000, dtype=np.int64)
    index.load(stored, np.repeat(np.arange(1000, dtype=np.int32), 30))
    presence = index._runs.presence
    biased = memindex._biased(np.unique(stored))
    assert presence.possible(biased).all()
    assert presence.possible_few([int(b) for b in biased[:50]]) == biased[:50].tolist()
    shuffled = memindex._Presence.of([rng.permutation(index._runs.main.keys)], 30_000)
    assert np.array_equal(shuffled.flags, presence.flags)  # keys in any order set the same bits
    strangers = memindex._biased(rng.integers(-(2**63), 2**63 - 1, size=20_000, dtype=np.int64))
    kept = presence.possible(strangers).mean()
    assert kept < 1 / 30
    assert len(presence.possible_few([int(b) for b in strangers])) == round(kept * 20_000)


def test_entries_are_normalised_to_sorted_unique() -> None:
    fps = fingerprint(PAYROLL)
    entry = Entry("x", np.concatenate([fps[::-1], fps[:3]]).tolist(), SECRET)  # type: ignore[arg-type]
    assert np.array_equal(entry.fingerprints, fps)
    store = memory_store()
    store.add_many([entry])
    assert store.lookup(PAYROLL)[0].containment == 1.0


def test_one_match_per_label_stands_for_the_others(store: SQLiteFingerprintStore) -> None:
    """A passage shared by many stored texts (a preamble): with ``one_per_label`` the best
    match of each label comes back, saying how many more it stands for."""
    preamble = prose(900, 40)
    for i in range(5):
        store.add_text(f"{preamble} {prose(i, 40)}", SECRET, text_id=f"secret-{i}")
    for i in range(2):
        store.add_text(f"{preamble} {prose(10 + i, 40)}", WEB, text_id=f"web-{i}")
    query = f"{preamble} {prose(2, 40)}"  # all of secret-2, the preamble of the others
    every = store.lookup(query)
    assert len(every) == 7 and every[0].text_id == "secret-2"
    grouped = store.lookup(query, options=LookupOptions(one_per_label=True))
    assert [(m.text_id, m.label, m.also) for m in grouped] == [
        ("secret-2", SECRET, 4),
        (every[[m.label for m in every].index(WEB)].text_id, WEB, 1),
    ]
    assert "and 4 more stored texts with this label" in grouped[0].provenance().detail
    assert LATTICE.join_all(m.label for m in grouped) == LATTICE.join_all(m.label for m in every)
