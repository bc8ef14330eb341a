"""Re-identification survives evasions of a stored confidential text (fingerprint scheme 2),
and does not fire on unrelated text; a store written with scheme 1 keeps matching."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labelgate.guard.fingerprint import (
    Entry,
    SQLiteFingerprintStore,
    WinnowParams,
    fingerprint,
    normalise,
)
from labelgate.guard.labels import Lattice

LATTICE = Lattice()
SECRET = LATTICE.label("confidential", "trusted", sources=["doc:plan"])
# Latin letters and their Cyrillic/Greek look-alikes (what a homoglyph attack swaps in)
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
HOMOGLYPHS |= {"A": "А", "B": "В", "E": "Е", "H": "Н", "K": "К", "M": "М", "T": "Т", "O": "Ο"}
INVISIBLE = ["\u200d", "\u200c", "\u200b", "\u00ad", "\ufeff", "\u2060"]

# Real-looking English: a fixed vocabulary, so that unrelated texts share common words
_VOCAB_TEXT = (
    "the board approved acquisition of traders for million euros on condition that deal "
    "closes before end third quarter and asked legal to review compete clauses founders "
    "anything signed payroll salary increase bonus staff office budget launch delayed team "
    "customer contract renewal vendor security incident report audit finding policy risk "
    "market share revenue forecast plan hiring freeze region north south merger talks price"
)
VOCAB = _VOCAB_TEXT.split()


def text_of(seed: int, words: int) -> str:
    rng = random.Random(seed)  # stored texts use seeds below 10**9, unrelated ones above
    return " ".join(rng.choice(VOCAB) for _ in range(words)) + "."


@st.composite
def stored_texts(draw: st.DrawFn) -> str:
    return text_of(draw(st.integers(0, 10**9 - 1)), draw(st.integers(40, 160)))


def store_with(text: str) -> SQLiteFingerprintStore:
    store = SQLiteFingerprintStore(":memory:", LATTICE)
    store.add_text(text, SECRET, text_id="secret")
    return store


def found(store: SQLiteFingerprintStore, query: str) -> bool:
    return any(m.text_id == "secret" for m in store.lookup(query))


def swap(text: str, rng: random.Random, share: float) -> str:
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < share else c for c in text)


def inside_words(text: str, rng: random.Random, insert: str, share: float) -> str:
    words = text.split()
    out = []
    for word in words:
        if len(word) > 2 and rng.random() < share:
            cut = rng.randrange(1, len(word))
            word = word[:cut] + insert + word[cut:]
        out.append(word)
    return " ".join(out)


EVASIONS = {
    "zero-width joiners": lambda t, rng: inside_words(t, rng, "\u200d", 0.8),
    "invisible characters": lambda t, rng: inside_words(t, rng, rng.choice(INVISIBLE), 0.8),
    "homoglyphs": lambda t, rng: swap(t, rng, 0.7),
    "homoglyphs, capitals": lambda t, rng: swap(t.upper(), rng, 0.7),
    "hyphens between letters": lambda t, rng: " ".join(
        "-".join(w) if rng.random() < 0.5 else w for w in t.split()
    ),
    "hyphen inside words": lambda t, rng: inside_words(t, rng, "-", 0.6),
    "letters spaced out": lambda t, rng: " ".join(
        " ".join(w) if rng.random() < 0.3 and len(w) > 3 else w for w in t.split()
    ),
    "fullwidth": lambda t, rng: "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and rng.random() < 0.5 else c for c in t
    ),
    "case": lambda t, rng: "".join(c.upper() if rng.random() < 0.5 else c for c in t),
    "accents and stacked marks": lambda t, rng: "".join(
        c + "\u0301\u0308" if c.isalpha() and rng.random() < 0.3 else c for c in t
    ),
}


@settings(max_examples=25, deadline=None)
@given(stored_texts(), st.sampled_from(sorted(EVASIONS)), st.randoms(use_true_random=False))
def test_an_evaded_copy_is_re_identified(text: str, name: str, rng: random.Random) -> None:
    store = store_with(text)
    evaded = EVASIONS[name](text, rng)
    assert normalise(evaded) == normalise(text) or name == "letters spaced out"
    assert found(store, evaded), name
    assert found(store, f"{text_of(10**9 + rng.randrange(10**9), 300)} {evaded}"), name


@settings(max_examples=40, deadline=None)
@given(stored_texts(), st.integers(10**9, 2 * 10**9), st.randoms(use_true_random=False))
def test_a_ten_word_excerpt_is_re_identified(text: str, seed: int, rng: random.Random) -> None:
    """Ten consecutive words of a stored text, alone or inside unrelated text, evaded or not:
    found by the copied run (a few percent of the stored text, far below the threshold)."""
    store = store_with(text)
    words = text.split()
    start = rng.randrange(len(words) - 10)
    excerpt = " ".join(words[start : start + 10])
    hits = [
        found(store, excerpt),
        found(store, f"{text_of(seed, 200)} {excerpt} {text_of(seed + 1, 200)}"),
        found(store, swap(inside_words(excerpt, rng, "\u200d", 0.5), rng, 0.5)),
    ]
    # a run needs two fingerprints of the stored text 7+ words apart among the excerpt's 6
    # k-grams: about 97% of excerpts (tests/bench/bench_fingerprints.py measures the rate).
    # The evasion normalises to the excerpt itself, so it is found exactly when the excerpt is;
    # surrounding text never hides an excerpt, but k-grams that straddle the boundary may
    # complete a run the excerpt alone falls short of (the filler shares the vocabulary).
    assert hits[2] == hits[0]
    assert hits[1] or not hits[0]


def test_ten_word_excerpts_are_mostly_found() -> None:
    found_runs = 0
    for seed in range(60):
        text = text_of(seed, 120)
        store = store_with(text)
        words = text.split()
        start = random.Random(seed).randrange(len(words) - 10)
        found_runs += found(store, " ".join(words[start : start + 10]))
    assert found_runs >= 50  # measured: 57 of 60


@settings(max_examples=30, deadline=None)
@given(stored_texts(), st.integers(10**9, 2 * 10**9))
def test_unrelated_text_is_not_re_identified(text: str, seed: int) -> None:
    """Unrelated text from the same small vocabulary (so it shares short phrases)."""
    store = store_with(text)
    assert not found(store, text_of(seed, 400))


def test_a_scheme_1_store_keeps_matching_after_the_upgrade(tmp_path: Path) -> None:
    """A file written with scheme 1 (before homoglyph folding): its texts keep their
    fingerprints and stay found, by share and by copied run; new texts get scheme 2."""
    path = tmp_path / "fp.db"
    old = WinnowParams(version=1, w=8)
    text = text_of(1, 150)
    store = SQLiteFingerprintStore(path, LATTICE)
    store.add_many([Entry("old", fingerprint(text, old), SECRET)])
    store.close()
    with sqlite3.connect(path) as conn:  # as labelgate before scheme 2 wrote it
        conn.execute(
            "UPDATE store_meta SET value = ? WHERE key = 'params'", [old.model_dump_json()]
        )

    store = SQLiteFingerprintStore(path, LATTICE)  # upgraded at open
    assert store.params == WinnowParams() and store.also_schemes == (1,)
    conn = sqlite3.connect(path)
    (legacy,) = conn.execute("SELECT value FROM store_meta WHERE key = 'legacy'").fetchone()
    assert json.loads(legacy) == [[old.model_dump(), 1]]
    words = text.split()
    assert [m.text_id for m in store.lookup(text)] == ["old"]
    assert [m.text_id for m in store.lookup(" ".join(words[20:80]))] == ["old"]
    (match,) = store.lookup(" ".join(words[40:64]))  # 24 words: a run (w=8 in scheme 1)
    assert match.run >= 8 and match.containment < 0.2
    store.add_text(text_of(2, 100), SECRET, text_id="new")
    assert [m.text_id for m in store.lookup(swap(text_of(2, 100), random.Random(0), 1))] == ["new"]
    store.close()
    again = SQLiteFingerprintStore(path, LATTICE)  # opening again changes nothing
    assert again.also_schemes == (1,) and len(again) == 2
    assert conn.execute("SELECT value FROM store_meta WHERE key = 'legacy'").fetchone() == (legacy,)
    again.close()


def test_a_store_of_another_k_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "fp.db"
    SQLiteFingerprintStore(path, LATTICE).close()
    with sqlite3.connect(path) as conn:
        old = WinnowParams(version=1, k=4, w=8).model_dump_json()
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'params'", [old])
    try:
        SQLiteFingerprintStore(path, LATTICE, WinnowParams())
    except ValueError as exc:
        assert str(path) in str(exc) and "k=4" in str(exc)
    else:
        raise AssertionError("opened")


def test_fingerprints_are_sorted_signed() -> None:
    fps = fingerprint(text_of(3, 200))
    assert np.all(fps[1:] > fps[:-1])
