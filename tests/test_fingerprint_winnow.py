"""Normalisation, hashing and winnowing: what must and must not change fingerprints."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelgate.guard.fingerprint.winnow import (
    GrowingText,
    WinnowParams,
    fingerprint,
    kgram_hashes,
    normalise,
    winnow,
    word_kgrams,
)

TEXT = (
    "The board approved the acquisition of Northwind Traders for 42 million euros on the "
    "condition that the deal closes before the end of the third quarter, and asked legal to "
    "review the non-compete clauses of the founders before anything is signed."
)

words = st.text(alphabet=st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=8)
separators = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", " \n  ", ", ", ". ", " - ", "; "])


def test_normalise_drops_case_punctuation_and_spacing() -> None:
    assert normalise("  Hello,\n\tWORLD!  It's 2024_05 ") == [
        "hello",
        "world",
        "it",
        "s",
        "2024",
        "05",
    ]


def test_normalise_unicode_compatibility_forms() -> None:
    # NFKC folds ligatures and full-width forms; casefold handles ß
    assert (
        normalise("ﬁne ＦＵＬＬ Straße")
        == normalise("fine full STRASSE")
        == [
            "fine",
            "full",
            "strasse",
        ]
    )


def test_number_grouping_does_not_matter() -> None:
    assert (
        normalise("paid 9,400 euros") == normalise("PAID 9400 EUROS") == ["paid", "9400", "euros"]
    )
    assert normalise("9.400 and 9\u202f400") == ["9400", "and", "9400"]
    assert normalise("items 1, 2 or 7") == ["items", "1", "2", "or", "7"]  # a space separates
    # ... but three one-character words in a row are a word spelled out (scheme 2)
    assert normalise("items 1, 2, 3") == ["items", "123"]
    assert normalise("items 1, 2, 3", 1) == ["items", "1", "2", "3"]


def test_ascii_fast_path_agrees_with_unicode_path() -> None:
    text = "Mixed_CASE words, with-punctuation; and\ttabs 123abc"
    # a non-ASCII character forces the regex path; compare on the ASCII words
    assert normalise(text) == normalise(text + " éé")[:-1]


@pytest.mark.parametrize(
    "variant",
    [
        TEXT.upper(),
        TEXT.lower(),
        TEXT.replace(" ", "\n"),
        TEXT.replace(" ", "   \t "),
        TEXT.replace(",", "").replace(".", "!"),
        textwrap.fill(TEXT, 30),
        textwrap.fill(TEXT, 70, initial_indent="> ", subsequent_indent="> "),
    ],
)
def test_surface_changes_keep_fingerprints(variant: str) -> None:
    assert np.array_equal(fingerprint(variant), fingerprint(TEXT))


def test_different_text_different_fingerprints() -> None:
    other = TEXT.replace("Northwind", "Southwind")
    assert not np.array_equal(fingerprint(other), fingerprint(TEXT))
    assert len(np.intersect1d(fingerprint(other), fingerprint(TEXT))) > 0  # most is shared


def test_fingerprints_are_sorted_unique_int64() -> None:
    fps = fingerprint(TEXT * 3)
    assert fps.dtype == np.int64
    assert np.all(np.diff(fps) > 0)


def test_short_and_empty_texts() -> None:
    assert len(fingerprint("")) == 0
    assert len(fingerprint(" ,.; ")) == 0
    one = fingerprint("secret code")
    assert len(one) == 1
    assert np.array_equal(one, fingerprint("SECRET,  code!"))
    assert not np.array_equal(one, fingerprint("secret"))
    assert not np.array_equal(one, fingerprint("code secret"))  # order matters


def test_density_follows_window() -> None:
    rng = random.Random(3)
    text = " ".join(f"w{rng.randrange(10**6)}" for _ in range(5000))
    for w in (4, 8, 16):
        density = len(fingerprint(text, WinnowParams(k=5, w=w))) / 5000
        assert density == pytest.approx(2 / (w + 1), rel=0.15)


def test_winnowing_guarantee() -> None:
    """Any shared run of w + k - 1 words yields a shared fingerprint."""
    params = WinnowParams(k=4, w=6)
    rng = random.Random(5)
    for trial in range(50):
        shared = [f"s{trial}x{rng.randrange(10**9)}" for _ in range(params.guarantee)]
        a = [f"a{rng.randrange(10**9)}" for _ in range(40)] + shared
        b = shared + [f"b{rng.randrange(10**9)}" for _ in range(40)]
        fa, fb = fingerprint(" ".join(a), params), fingerprint(" ".join(b), params)
        assert len(np.intersect1d(fa, fb)) >= 1


def test_winnow_picks_window_minima() -> None:
    hashes = np.array([5, 3, 9, 9, 1, 7, 8, 2, 6], dtype=np.uint64)
    # windows of 3: min(5,3,9)=3 (9,9,3)... minima: 3,3,1,1,1,2,2
    assert winnow(hashes, 3).tolist() == [1, 2, 3]
    assert winnow(hashes[:2], 3).tolist() == [3]


def test_kgram_hashes_count_and_order() -> None:
    h = kgram_hashes(["a", "b", "c", "d"], 2)
    assert len(h) == 3
    assert h[0] != kgram_hashes(["b", "a"], 2)[0]
    assert len(kgram_hashes(["a"], 5)) == 1


def test_hashes_stable_across_processes() -> None:
    """Python's hash() is salted per process; ours must not be."""
    code = f"from guard.fingerprint import fingerprint; print(fingerprint({TEXT!r}).tolist())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=str(__import__("pathlib").Path(__file__).parents[1]),
    ).stdout
    assert out.strip() == str(fingerprint(TEXT).tolist())


def test_params_validation() -> None:
    assert WinnowParams().guarantee == 7
    assert WinnowParams(version=1, w=8).guarantee == 12
    with pytest.raises(ValueError):
        WinnowParams(k=0)
    with pytest.raises(ValueError):
        WinnowParams(version=999)


@settings(max_examples=300, deadline=None)
@given(st.lists(words, min_size=1, max_size=60), st.data())
def test_any_rewrapping_gives_same_fingerprints(tokens: list[str], data: st.DataObject) -> None:
    plain = " ".join(tokens)
    seps = data.draw(st.lists(separators, min_size=len(tokens), max_size=len(tokens)))
    rewrapped = "".join(
        (t.upper() if i % 2 else t) + sep
        for i, (t, sep) in enumerate(zip(tokens, seps, strict=True))
    )
    assert np.array_equal(fingerprint(rewrapped), fingerprint(plain))


@settings(max_examples=50, deadline=None)
@given(st.lists(words, min_size=20, max_size=80), st.integers(0, 200))
def test_text_contains_its_fingerprints_when_embedded(tokens: list[str], pad: int) -> None:
    """A long enough text inside another keeps all its fingerprints except near the edges."""
    inner = " ".join(tokens)
    outer = " ".join(["zz"] * pad + tokens + ["yy"] * pad)
    fi, fo = fingerprint(inner), fingerprint(outer)
    assert len(np.intersect1d(fi, fo)) >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_fast_path_agrees_on_any_ascii(text: str) -> None:
    assert normalise(text) == normalise(text + " éé")[:-1]


def test_full_width_numbers() -> None:
    assert normalise("９，４００ ＥＵＲ") == ["9400", "eur"]


@given(
    st.lists(st.tuples(words, separators), max_size=50),
    st.lists(st.integers(1, 15), min_size=1, max_size=40),
    st.sampled_from([1, 2, 5]),
)
@settings(max_examples=300, deadline=None)
def test_a_growing_text_holds_every_k_gram_of_what_has_come(
    parts: list[tuple[str, str]], steps: list[int], k: int
) -> None:
    """However a streamed text is cut into pieces, the hashes kept as it grows include every
    k-gram (hence every fingerprint) of the text so far, and of the finished text."""
    text = "".join(word + sep for word, sep in parts)
    params = WinnowParams(k=k, w=4)
    growing = GrowingText(params)
    end = 0
    for step in steps:
        end = min(len(text), end + step)
        so_far = text[:end]
        every = set(kgram_hashes(normalise(so_far), k).view(np.int64).tolist())
        assert every <= growing.hashes(so_far)
    assert set(fingerprint(text, params).tolist()) <= growing.hashes(text)


small_words = st.sampled_from(["a", "b", "c", "d", "e", "f"])  # few words: many shared runs


@given(
    st.lists(small_words, max_size=30),
    st.lists(small_words, max_size=30),
    st.sampled_from([1, 2, 3, 5]),
    st.sampled_from([1, 3, 8]),
)
@settings(max_examples=500, deadline=None)
def test_texts_sharing_a_fingerprint_share_a_word_kgram(
    left: list[str], right: list[str], k: int, w: int
) -> None:
    """The cheap test ``Guard.could_reidentify`` uses: whenever two texts share a fingerprint,
    they share a word k-gram (and when they share none, no fingerprint either)."""
    params = WinnowParams(k=k, w=w)
    shared_fingerprint = bool(
        set(fingerprint(" ".join(left), params).tolist())
        & set(fingerprint(" ".join(right), params).tolist())
    )
    shared_kgram = bool(word_kgrams(left, k) & word_kgrams(right, k))
    assert shared_kgram or not shared_fingerprint
    if shared_kgram and len(left) >= k and len(right) >= k:  # a shared k-gram hashes alike
        assert set(kgram_hashes(left, k).tolist()) & set(kgram_hashes(right, k).tolist())
