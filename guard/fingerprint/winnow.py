"""Normalisation, word k-gram hashing and winnowing (Schleimer, Wilkerson, Aiken 2003).

A text becomes a sorted array of unique 64-bit fingerprints:

1. normalise: Unicode NFKC, case folding (of the upper case, so every case variant of a word
   folds alike), drop separators inside numbers, and keep only runs of letters and digits as
   words, so whitespace, case, punctuation and re-wrapping do not change the word sequence;
2. hash every word once (blake2b, 8 bytes: stable across processes and machines, unlike the
   salted ``hash()``) and combine each run of ``k`` consecutive word hashes into a k-gram hash
   (a polynomial over the word hashes modulo 2**64, then the splitmix64 finaliser so that the
   minimum of a window is an unbiased sample);
3. winnow: in every window of ``w`` consecutive k-gram hashes keep the minimum. Any run of at
   least ``w + k - 1`` words shared by two texts yields at least one shared fingerprint, while
   only about ``2 / (w + 1)`` of the k-grams are kept.

Texts with fewer than ``k`` words get one fingerprint, the hash of all their words; texts with
no words get none. The fingerprints are exposed as signed int64 so they fit SQLite's INTEGER.
"""

from __future__ import annotations

import re
import unicodedata
from hashlib import blake2b

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

Fingerprints = npt.NDArray[np.int64]

# Letters and digits only: "_" is a word character for `\w`, but to a reader it is punctuation.
_WORD = re.compile(r"[^\W_]+")
# The same split for ASCII text, about ten times faster than the regex (the common case).
_ASCII_SPACE = bytes(c if chr(c).isalnum() else 32 for c in range(128)) + b" " * 128
# A leading \d rather than a lookbehind: twice as fast, the scan skips to digits
_DIGIT_SEPARATOR = re.compile(r"(\d)[,.'’\u00a0\u202f](?=\d)")
_ASCII_DIGIT_SEPARATOR = re.compile(rb"([0-9])[,.'](?=[0-9])")
_DIGITS = [bytes([c]) for c in b"0123456789"]
_CACHE_LIMIT = 1 << 18
_word_cache: dict[str, int] = {}
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, from the golden ratio: spreads the polynomial
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Bump when normalisation or hashing changes: stores refuse fingerprints of another scheme.
SCHEME_VERSION = 1


class WinnowParams(BaseModel):
    """Fingerprinting parameters; a store keeps them and refuses to mix schemes.

    ``k`` (words per k-gram): larger ignores more coincidental phrases but needs longer copies.
    ``w`` (window): the guarantee threshold is ``w + k - 1`` words and the density is about
    ``2 / (w + 1)`` fingerprints per word. The defaults (5, 8) detect any copied run of 12 words
    and keep about 0.22 fingerprints per word (a 1 KB text: about 40).
    """

    model_config = {"frozen": True, "extra": "forbid"}

    k: int = Field(default=5, ge=1, le=64)
    w: int = Field(default=8, ge=1, le=1024)
    version: int = SCHEME_VERSION

    @model_validator(mode="after")
    def _same_scheme(self) -> WinnowParams:
        if self.version != SCHEME_VERSION:
            raise ValueError(f"fingerprint scheme {self.version} is not {SCHEME_VERSION}")
        return self

    @property
    def guarantee(self) -> int:
        """Shared runs of at least this many words always share a fingerprint."""
        return self.w + self.k - 1


DEFAULT_PARAMS = WinnowParams()


def normalise(text: str) -> list[str]:
    """The words of ``text`` after NFKC and casefolding; punctuation and spacing are gone.

    Separators inside numbers are dropped ("9,400", "9.400" and "9400" are one word), so
    rewriting a number's grouping does not break the k-grams around it.
    """
    if text.isascii():
        data = text.lower().encode("ascii")
        if any(digit in data for digit in _DIGITS):  # memchr scans: skip the slow regex
            data = _ASCII_DIGIT_SEPARATOR.sub(rb"\1", data)
        return data.translate(_ASCII_SPACE).decode("ascii").split()
    # before NFKC (which turns narrow spaces into spaces) and after (full-width commas)
    text = _DIGIT_SEPARATOR.sub(r"\1", text)
    text = _DIGIT_SEPARATOR.sub(r"\1", unicodedata.normalize("NFKC", text))
    # upper() first: casefold alone leaves e.g. Turkish dotless "ı" apart from its capital "I"
    folded = text.upper().casefold()
    return _WORD.findall(unicodedata.normalize("NFKC", folded))


def _word_hash_miss(word: str) -> int:
    if len(_word_cache) >= _CACHE_LIMIT:
        _word_cache.clear()  # bounded memory; a clear only costs re-hashing
    # signed: numpy converts a list of C longs about ten times faster than larger ints
    digest = blake2b(word.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little", signed=True)
    _word_cache[word] = value
    return value


def word_hashes(words: list[str]) -> npt.NDArray[np.uint64]:
    """Stable 64-bit hashes of the words (cached; safe to call from several threads)."""
    get = _word_cache.get
    # `or` only recomputes a hash that happens to be 0 or was just evicted: same value
    values = [get(word) or _word_hash_miss(word) for word in words]
    return np.array(values, dtype=np.int64).view(np.uint64)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def kgram_hashes(words: list[str], k: int) -> npt.NDArray[np.uint64]:
    """One hash per k-gram, in text order (one hash of everything when fewer than k words)."""
    if not words:
        return np.empty(0, dtype=np.uint64)
    wh = word_hashes(words)
    k = min(k, len(wh))
    n = len(wh) - k + 1
    acc = wh[:n].copy()
    with np.errstate(over="ignore"):  # wrapping arithmetic modulo 2**64 is the point
        for j in range(1, k):
            acc = acc * _MULT + wh[j : j + n]
        acc = acc + np.uint64(k)  # a 2-word text and a 5-word text never hash alike by length
        return _mix(acc)


def word_kgrams(words: list[str], k: int) -> set[tuple[str, ...]]:
    """The k-grams of ``words`` (all of them as one when fewer than ``k``), as word tuples.

    Two texts share a fingerprint only if they share one of these, since a fingerprint is a
    k-gram's hash (barring two k-grams that hash alike: one chance in 2**64 a pair). Testing
    that needs no hashing nor winnowing: a tenth of a fingerprint's cost.
    """
    if len(words) < k:
        return {tuple(words)} if words else set()
    return set(zip(*(words[j:] for j in range(k)), strict=False))  # the last ends at the end


class GrowingText:
    """The k-gram hashes (all of them, not only the winnowed ones) of a text that grows, such
    as an answer being streamed, kept up to date from what was added since the last call.

    A text written from what had been streamed shares its fingerprints with the finished text
    only among these (or, by chance, with text still to come). Complete words are hashed once,
    up to the last ASCII whitespace (a safe cut for ``normalise``); the words after it are
    hashed again at each call that brings more text, since the last of them may be
    unfinished, and their k-grams kept too (a stale one can only make a relay look likelier:
    no copy of the set per call). A call with nothing added returns the set as it is.
    """

    def __init__(self, params: WinnowParams = DEFAULT_PARAMS) -> None:
        self._k = params.k
        self._done = 0  # characters turned into words for good
        self._tail: list[str] = []  # the last k - 1 of those words
        self._words = 0
        self._hashes: set[int] = set()
        self._seen = -1  # the length of the text at the last call

    def hashes(self, text: str) -> set[int]:
        """The k-gram hashes of ``text``, which extends the text of the previous call."""
        if len(text) == self._seen:  # nothing added (the text only grows): nothing to hash
            return self._hashes
        self._seen = len(text)
        cut = max(text.rfind(space, self._done) for space in " \n\t\r")
        if cut > self._done:
            words = normalise(text[self._done : cut])
            self._hashes |= self._kgrams(words)
            self._words += len(words)
            run = self._tail + words
            self._tail = run[max(0, len(run) - self._k + 1) :]
            self._done = cut
        rest = normalise(text[self._done :])
        if rest:
            self._hashes |= self._kgrams(rest)
        return self._hashes

    def _kgrams(self, words: list[str]) -> set[int]:
        """The k-grams that end in ``words`` (which follow the words seen so far); while the
        text is shorter than k words, the hash of all its words, as ``fingerprint`` has it."""
        run = self._tail + words
        if not words or (len(run) < self._k and self._words + len(words) >= self._k):
            return set()
        return set(kgram_hashes(run, self._k).view(np.int64).tolist())


def winnow(hashes: npt.NDArray[np.uint64], w: int) -> npt.NDArray[np.uint64]:
    """The minimum of every window of ``w`` hashes, as a sorted unique array.

    Only the values are kept (not positions), so which of tied minima is picked (the paper's
    robust winnowing prefers the rightmost) cannot change the result.
    """
    if len(hashes) <= w:
        return hashes[[int(np.argmin(hashes))]] if len(hashes) else hashes
    n = len(hashes) - w + 1
    minima = hashes[:n]
    for j in range(1, w):  # w vector ops beat a sliding-window argmin by 3x at these sizes
        minima = np.minimum(minima, hashes[j : j + n])
    return sorted_unique(minima)


def sorted_unique(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """``np.unique`` without its fixed cost (10x faster on a few hundred values)."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def fingerprint_words(words: list[str], params: WinnowParams = DEFAULT_PARAMS) -> Fingerprints:
    return winnow(kgram_hashes(words, params.k), params.w).view(np.int64)


def fingerprint(text: str, params: WinnowParams = DEFAULT_PARAMS) -> Fingerprints:
    """The sorted unique signed 64-bit fingerprints of ``text``."""
    return fingerprint_words(normalise(text), params)
