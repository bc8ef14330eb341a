"""Normalisation, word k-gram hashing and winnowing (Schleimer, Wilkerson, Aiken 2003).

A text becomes a sorted array of unique 64-bit fingerprints:

1. normalise (scheme 2): drop invisible characters (Default_Ignorable_Code_Point and Cf: ZWJ,
   ZWNJ, ZWSP, soft hyphen, BOM...), Unicode NFKD, case folding (of the upper case, so every
   case variant of a word folds alike), then a generated table (``foldtable``) deletes every
   mark (accents, stacked diacritics) and maps each confusable character to its Unicode TR39
   skeleton (Cyrillic "а" is "a"); hyphens are deleted (``c-o-n-f-i-d-e-n-t-i-a-l``,
   ``confi-dential``, ``informa-`` / ``tion`` at a line end are one word), separators inside
   numbers are dropped, only runs of letters and digits are kept as words, and a run of three
   or more one-character words is one word (``c o n f`` and ``c.o.n.f`` are ``conf``).
   Whitespace, case, punctuation, re-wrapping, invisible characters, homoglyphs and letters
   split apart therefore do not change the word sequence. Scheme 1 (NFKC, case folding,
   letters and digits) is kept (``normalise(text, 1)``) to look up stores written with it;
2. hash every word once (blake2b, 8 bytes: stable across processes and machines, unlike the
   salted ``hash()``) and combine each run of ``k`` consecutive word hashes into a k-gram hash
   (a polynomial over the word hashes modulo 2**64, then the splitmix64 finaliser so that the
   minimum of a window is an unbiased sample);
3. winnow: in every window of ``w`` consecutive k-gram hashes keep the minimum. Any run of at
   least ``w + k - 1`` words shared by two texts yields at least one shared fingerprint, while
   only about ``2 / (w + 1)`` of the k-grams are kept.

Texts with fewer than ``k`` words get one fingerprint, the hash of all their words; texts with
no words get none. The fingerprints are exposed as signed int64 so they fit SQLite's INTEGER.
Hashing is the same in both schemes: where a text's words normalise alike under both, so do
its k-gram hashes (what lets a store written with scheme 1 keep matching).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from hashlib import blake2b

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, model_validator

from labelgate.guard.fingerprint import foldtable

Fingerprints = npt.NDArray[np.int64]

# Letters and digits only: "_" is a word character for `\w`, but to a reader it is punctuation.
_WORD = re.compile(r"[^\W_]+")
# A leading \d rather than a lookbehind: twice as fast, the scan skips to digits
_DIGIT_SEPARATOR = re.compile(r"(\d)[,.'’\u00a0\u202f](?=\d)")
_ASCII_DIGIT_SEPARATOR = re.compile(rb"([0-9])[,.'](?=[0-9])")
_DIGITS = [bytes([c]) for c in b"0123456789"]
_CACHE_LIMIT = 1 << 18
_word_cache: dict[str, int] = {}
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, from the golden ratio: spreads the polynomial
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Bump when normalisation or hashing changes (docs/fingerprints.md says what each one is).
SCHEME_VERSION = 2
SCHEMES = (1, 2)  # what ``normalise`` can still compute: stores written with these open
# Scheme 2: hyphens between letters go (below, the table deletes every hyphen), also at a
# line end with its line break ("informa-" / "tion"), soft or confusable hyphens included
_LINE_HYPHEN = re.compile(r"[-\u00ad\u2010\u2011][ \t]*\r?\n[ \t]*")
_ASCII_LINE_HYPHEN = re.compile(rb"-[ \t]*\r?\n[ \t]*")
# The ASCII fast path: letters and digits kept, hyphens deleted, the rest a space
_ASCII_WORDS = bytes(c if chr(c).isalnum() else 32 for c in range(128)) + b" " * 128
# Words (letters and digits) as "a", spaces as " ": b" a a a " finds a run of 1-letter words
_SHAPE = bytes(97 if chr(c).isalnum() else 32 for c in range(128)) + b" " * 128
_HYPHENS = ("-", "\u00ad", "\u2010", "\u2011")
_RUN = 3  # this many one-character words in a row are one spelled-out word
_ASCII_RUN = re.compile(rb" a +a +a ")  # on _SHAPE: three 1-character words in a row


class WinnowParams(BaseModel):
    """Fingerprinting parameters; a store keeps them and refuses to mix schemes.

    ``k`` (words per k-gram): larger ignores more coincidental phrases but needs longer copies.
    ``w`` (window): the guarantee threshold is ``w + k - 1`` words and the density is about
    ``2 / (w + 1)`` fingerprints per word. The defaults (5, 3) detect any copied run of 7 words
    and keep about 0.5 fingerprints per word (a 1 KB text: about 90). ``version``: the
    normalisation scheme (1: before homoglyphs and invisible characters were folded, w=8).
    """

    model_config = {"frozen": True, "extra": "forbid"}

    k: int = Field(default=5, ge=1, le=64)
    w: int = Field(default=3, ge=1, le=1024)
    version: int = SCHEME_VERSION

    @model_validator(mode="after")
    def _known_scheme(self) -> WinnowParams:
        if self.version not in SCHEMES:
            raise ValueError(
                f"fingerprint scheme {self.version} is unknown: this labelgate computes "
                f"schemes {SCHEMES[0]} to {SCHEMES[-1]} (a newer labelgate wrote it?)"
            )
        return self

    @property
    def guarantee(self) -> int:
        """Shared runs of at least this many words always share a fingerprint."""
        return self.w + self.k - 1


DEFAULT_PARAMS = WinnowParams()


def normalise(text: str, version: int = SCHEME_VERSION) -> list[str]:
    """The words of ``text``, folded as fingerprint scheme ``version`` does (see the module).

    Separators inside numbers are dropped ("9,400", "9.400" and "9400" are one word), so
    rewriting a number's grouping does not break the k-grams around it.
    """
    if version == 1:
        return _normalise_v1(text)
    if text.isascii():
        data = text.lower().encode("ascii")
        if any(digit in data for digit in _DIGITS):  # memchr scans: skip the slow regex
            data = _ASCII_DIGIT_SEPARATOR.sub(rb"\1", data)
        if b"-" in data and b"\n" in data:
            data = _ASCII_LINE_HYPHEN.sub(b"", data)
        data = data.translate(_ASCII_WORDS, b"-")
        words = data.decode("ascii").split()
        if _ASCII_RUN.search(b" " + data.translate(_SHAPE) + b" "):
            return _join_runs(words)
        return words
    # before NFKD (which turns narrow spaces into spaces) and after (full-width commas)
    text = _DIGIT_SEPARATOR.sub(r"\1", text)
    text = _DIGIT_SEPARATOR.sub(r"\1", unicodedata.normalize("NFKD", text))
    if "\n" in text:
        text = _LINE_HYPHEN.sub("", text)
    # upper() first: casefold alone leaves e.g. Turkish dotless "ı" apart from its capital "I"
    folded = text.upper().casefold()
    found = _fold_words(folded)
    if found is None:  # a character the lookup array does not cover: the same, slower
        return _join_runs(_WORD.findall(folded.translate(_fold_table())))
    return found


def _fold_words(folded: str) -> list[str] | None:
    """The words of case-folded ``folded`` through ``_fold_array``, or None when it holds a
    character beyond the array (then ``_fold_table`` does it, more slowly)."""
    points = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
    if int(points.max(initial=0)) >= _ARRAY_SIZE:
        return None
    fold = _fold_array()
    mapped = fold.array[points]
    if int(mapped.min(initial=0)) < 0:  # deleted characters
        mapped = mapped[mapped != _DELETED]
    text = mapped.astype(np.uint32).tobytes().decode("utf-32-le")
    if int(mapped.max(initial=0)) >= _SEVERAL:  # "æ" is "ae": replace the stand-ins
        for stand_in in np.unique(mapped[mapped >= _SEVERAL]).tolist():
            text = text.replace(chr(stand_in), fold.several[stand_in - _SEVERAL])
        return _join_runs(text.split())
    words = text.split()
    # one-character words in a row (a word spelled out) are rare: find them without a loop
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mapped != 32, [False]))))
    single = (edges[1::2] - edges[::2]) == 1  # each word's end minus its start
    return _join_runs(words) if b"\x01\x01\x01" in single.tobytes() else words


def _join_runs(words: list[str]) -> list[str]:
    """Runs of at least ``_RUN`` one-character words joined: a word spelled out, "c o n f"."""
    out: list[str] = []
    run: list[str] = []
    for word in words:
        if len(word) == 1:
            run.append(word)
            continue
        if run:
            out.extend(["".join(run)] if len(run) >= _RUN else run)
            run = []
        out.append(word)
    if run:
        out.extend(["".join(run)] if len(run) >= _RUN else run)
    return out


def _codepoints(ranges: str) -> list[int]:
    out: list[int] = []
    for item in ranges.split():
        first, _, last = item.partition("-")
        out.extend(range(int(first, 16), int(last or first, 16) + 1))
    return out


@cache
def _ignorable() -> dict[int, None]:
    """Invisible characters (and marks), deleted before anything else looks at the text."""
    return dict.fromkeys(_codepoints("".join(foldtable.DELETED)))


@cache
def _fold_table() -> dict[int, str | None]:
    """``str.translate`` table of scheme 2: marks and invisible characters deleted,
    confusables mapped to their skeleton, hyphens deleted. Built at the first non-ASCII text."""
    table: dict[int, str | None] = dict(_ignorable())
    for item in "".join(foldtable.MAPPED).split():
        source, _, target = item.partition("=")
        text = "".join(chr(int(c, 16)) for c in target.split("."))
        table[int(source, 16)] = None if text == "-" else text
    table[ord("-")] = None
    return table


_ARRAY_SIZE = 0x20000  # the Basic and Supplementary Multilingual Planes
_DELETED = -1
_SEVERAL = 0xF0000  # stand-ins (private use, beyond the array) for several characters


@dataclass(frozen=True)
class _FoldArray:
    array: npt.NDArray[np.int32]
    several: list[str]  # what the stand-in _SEVERAL + i stands for


@cache
def _fold_array() -> _FoldArray:
    """``_fold_table`` as an array over code points, with every character that is not a
    letter or digit (as ``_WORD`` has it) already a space: a lookup per character in numpy
    instead of a dict lookup in ``str.translate`` (ten times faster on a text that is not
    ASCII). Built at the first such text (about 50 ms), 512 KiB."""
    table = _fold_table()
    out = np.empty(_ARRAY_SIZE, dtype=np.int32)
    several: list[str] = []
    for code in range(_ARRAY_SIZE):
        target = table.get(code, chr(code))
        if target is None:
            out[code] = _DELETED
        elif len(target) > 1:
            out[code] = _SEVERAL + len(several)
            several.append("".join(c if c.isalnum() else " " for c in target))
        else:
            out[code] = ord(target) if target.isalnum() else 32
    return _FoldArray(out, several)


def _normalise_v1(text: str) -> list[str]:
    """Scheme 1: NFKC, case folding, separators inside numbers dropped, letters and digits."""
    if text.isascii():
        data = text.lower().encode("ascii")
        if any(digit in data for digit in _DIGITS):
            data = _ASCII_DIGIT_SEPARATOR.sub(rb"\1", data)
        return data.translate(_ASCII_WORDS).decode("ascii").split()
    text = _DIGIT_SEPARATOR.sub(r"\1", text)
    text = _DIGIT_SEPARATOR.sub(r"\1", unicodedata.normalize("NFKC", text))
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
    up to a safe cut: the last ASCII whitespace after which nothing joins the words before it
    (scheme 2 joins a line-end hyphen with the next line and a run of one-letter words, so a
    cut after "informa-" or inside "c o n f" moves back); the words after it are hashed again
    at each call that brings more text, since the last of them may be unfinished, and their
    k-grams kept too (a stale one can only make a relay look likelier: no copy of the set per
    call). A call with nothing added returns the set as it is.
    """

    def __init__(self, params: WinnowParams = DEFAULT_PARAMS) -> None:
        self._k = params.k
        self._version = params.version
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
        cut, words = self._safe_cut(text)
        if cut > self._done:
            self._hashes |= self._kgrams(words)
            self._words += len(words)
            run = self._tail + words
            self._tail = run[max(0, len(run) - self._k + 1) :]
            self._done = cut
        rest = normalise(text[self._done :], self._version)
        if rest:
            self._hashes |= self._kgrams(rest)
        return self._hashes

    def _safe_cut(self, text: str) -> tuple[int, list[str]]:
        """The last whitespace after which the words so far are final, and those words."""
        end = len(text)
        while True:
            cut = max(text.rfind(space, self._done, end) for space in " \n\t\r")
            if cut <= self._done:
                return self._done, []
            part = text[self._done : cut]
            if self._version == 1 or self._final(part):
                return cut, normalise(part, self._version)
            end = cut

    def _final(self, part: str) -> bool:
        """Does nothing after ``part`` join its words? Not when it ends with a hyphen, nor
        when its last token (alone) is not one word of two or more characters: a run of
        one-character words may go on."""
        tokens = part.rsplit(None, 1)
        if not tokens or part.rstrip().endswith(_HYPHENS):
            return False
        last = normalise(tokens[-1], self._version)
        return len(last) == 1 and len(last[0]) > 1

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
    # winnow sorts them unsigned; as signed, those past 2**63 (negative) go first
    return np.sort(winnow(kgram_hashes(words, params.k), params.w).view(np.int64))


def fingerprint(text: str, params: WinnowParams = DEFAULT_PARAMS) -> Fingerprints:
    """The sorted unique signed 64-bit fingerprints of ``text``."""
    return fingerprint_words(normalise(text, params.version), params)
