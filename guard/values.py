"""Values in text: the numbers, amounts, codes, addresses, dates and names that decide what an
answer *does*, shared by every "same answer" test and every value-level soundness check.

A one-value substitution (an IBAN, an e-mail address, an amount, an access code) is the whole
of most attacks, and word-overlap measures barely see it: ROUGE-L scores "The access code for
the Heron vault is 9920." against the same sentence with 7741 at 0.875. So labelgate compares
answers and attributes content by their *values*, exactly:

- ``values(text)``: the values of a text, normalised (``120.00 EUR`` -> ``120 eur``, ``1,234.50``
  -> ``1234.5``, ``DE89 3704 ...`` -> ``de893704...``, ``18 March 2026`` -> ``2026-03-18``,
  ``09:00`` -> ``9:00``, ``https://Shop.example/a?x=1`` -> ``https://shop.example/a?x=1``) with
  their parts (the host, path segments and query values of a URL, the pieces of a code, the
  number of an amount, each word of a multi-word name), so that a value composed of parts can
  be attributed part by part.
- ``value_multiset(text)``: the normalised values, counted; two answers whose multisets
  differ are different answers, whatever their word overlap.
- ``ValueIndex``: what an input *contains*, in two strengths. ``strictly`` is an exact value
  (or whole-token) occurrence in the text as written: the test for "a kept input explains this
  value". ``broadly`` also counts re-encodings (URL-encoding, base64, hex, per-character
  spelling such as ``9-9-2-0`` or ``nine nine two zero``, digit groups split by separators)
  and partial copies (a piece of at least 4 characters of one of the input's values, or 3 of
  a value at most twice as long): the test for "this value may have come from a dropped
  input". Using the broad test for dropped inputs and the strict one for kept inputs errs on
  the side of keeping labels.

Everything here is pure and cached per text (``functools.lru_cache``): propagators and the
argument-provenance code ask about the same inputs many times.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from labelgate.guard.similarity import STOP_WORDS, tokens

Kind = Literal[
    "email", "url", "host", "iban", "amount", "number", "date", "time", "code", "name", "part"
]

# Capitalised words that start sentences without naming anything.
_COMMON_STARTS = frozenset(
    [
        "sure",
        "certainly",
        "okay",
        "ok",
        "hello",
        "hi",
        "hey",
        "dear",
        "thanks",
        "thank",
        "regards",
        "best",
        "sorry",
        "note",
        "please",
        "yes",
        "no",
        "done",
        "great",
        "unfortunately",
        "however",
        "also",
        "first",
        "next",
        "then",
        "finally",
        "here",
        "there",
        "answer",
        "reply",
        "subject",
        "re",
        "fwd",
        "fw",
        "hereby",
        "kind",
        "sincerely",
        "cheers",
        "good",
        "well",
        "alright",
        "absolutely",
        "i'm",
        "i've",
        "i'll",
        "let",
        "it's",
        "that's",
        "there's",
        "here's",
        "this",
        "these",
        "those",
        "we",
        "you",
        "they",
        "he",
        "she",
    ]
)
_CURRENCIES = (
    "EUR|USD|GBP|CHF|JPY|CNY|SEK|NOK|DKK|PLN|CAD|AUD|NZD|INR|BRL|ZAR|KRW|MXN|SGD|HKD|CZK|HUF|TRY"
)
_MONTHS = {
    m: n
    for n, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        1,
    )
    for m in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DIGIT_WORDS = {
    w: str(n)
    for n, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
} | {"oh": "0"}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.IGNORECASE)
_HOST = re.compile(r"(?<![@\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b")
_NUM = r"\d+(?:[.,'\u2019\u00a0\u202f]\d+)*"
_AMOUNT = re.compile(
    rf"(?:([€$£¥₹])\s?({_NUM})|\b({_CURRENCIES})\s?({_NUM})|({_NUM})\s?(?:([€$£¥₹])|({_CURRENCIES})\b))"
)
_NUMBER = re.compile(rf"(?<![\w.,])({_NUM})(?![\w]|[.,]\d)")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_DOT_DATE = re.compile(r"\b(\d{1,2})\.(\d{1,2})\.(\d{4})\b")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{2,4})\b")
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\b\.?(?:,?\s+(\d{{4}})\b)?",
    re.IGNORECASE,
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_RE})\b\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?", re.IGNORECASE
)
_TIME = re.compile(r"\b([01]?\d|2[0-3])[:.h]([0-5]\d)(?::[0-5]\d)?\s*([ap]\.?m\.?)?", re.I)
_CODE = re.compile(
    r"(?<![\w@])(?=[\w#/-]*\d)(?=[\w#/-]*[A-Za-z])[A-Za-z0-9][\w#/-]*[A-Za-z0-9](?![\w@])"
    r"|(?<![\w@.-])\d+(?:[-/_]\d+)+(?![\w@-])"
    r"|\b[A-Za-z]*[a-z][A-Z][A-Za-z]*\b"  # mixed case inside a word: an id, not a word
)
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:[ \t]+[A-Z][\w'’-]*)*")
_SENTENCE_END = re.compile(r"(?:[.!?:;\n>\"(\[]|\s[-–—])\s*$")

_B64 = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{6,}={0,2}(?![\w+/=-])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){3,}\b")
_SPELLED = re.compile(r"(?<!\w)\w(?!\w)(?:[\-.,_/|*·]{1,2}\w(?!\w)){2,}")
_UNIT = r"\S(?![^\s.,;:!?)\]])"
_SPELLED_SPACES = re.compile(rf"(?<!\S){_UNIT}(?:[ \t]{{1,3}}{_UNIT}){{2,}}")
_SPELLED_DIGITS = re.compile(
    rf"\b(?:{'|'.join(_DIGIT_WORDS)})(?:[\s,-]+(?:{'|'.join(_DIGIT_WORDS)})){{2,}}\b", re.I
)
_DIGIT_GROUPS = re.compile(r"\d+(?:[\s\-./,_]{1,2}\d+)+")


@dataclass(frozen=True, slots=True)
class Value:
    """One value as written (``raw``) and as compared (``norm``)."""

    kind: Kind
    norm: str
    raw: str


# --------------------------------------------------------------------------- normalising


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def number_norm(raw: str) -> str:
    """``1,234.50`` -> ``1234.5``, ``1.234,5`` -> ``1234.5``, ``120.00`` -> ``120``, ``0042`` stays.

    One separator: ``.`` is a decimal point; ``,`` is a thousands separator before exactly
    three digits, else a decimal comma; apostrophes and (thin) spaces group thousands. Several:
    the last one is the decimal mark when it differs from the others. Groups that are not
    thousands (``1.2.3``) keep the text as written.
    """
    seps = re.findall(r"[.,'\u2019\u00a0\u202f]", raw)
    groups = re.split(r"[.,'\u2019\u00a0\u202f]", raw)
    if not seps:
        return raw
    decimal: str | None = None
    if len(seps) == 1:
        sep = seps[0]
        if sep == "." or (sep == "," and len(groups[1]) != 3):
            decimal = sep
    elif seps[-1] in ".," and seps[-1] != seps[0] and len(set(seps[:-1])) == 1:
        decimal = seps[-1]
    thousands = groups[1:-1] if decimal else groups[1:]
    if any(len(g) != 3 for g in thousands):
        return raw
    whole = "".join(groups[:-1] if decimal else groups)
    if decimal is None:
        return whole
    frac = groups[-1].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def _date(year: str | None, month: int, day: int) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    md = f"{month:02d}-{day:02d}"
    return f"{int(year):04d}-{md}" if year and len(year) == 4 else md


def _url_parts(url: str) -> list[tuple[Kind, str]]:
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return []
    found: list[tuple[Kind, str]] = []
    if parts.hostname:
        found.append(("host", parts.hostname.removeprefix("www.")))
    for seg in re.split(r"[/&;=?]", unquote(parts.path) + "?" + parts.query + "?" + parts.fragment):
        seg = unquote_plus(seg).strip()
        if len(seg) >= 2:
            found.append(("part", fold(seg)))
    return found


def _name_words(match: re.Match[str], text: str) -> list[str]:
    words = match.group(0).split()
    start = match.start()
    before = text[max(0, start - 8) : start]
    initial = (not before.strip() and start < 8) or bool(_SENTENCE_END.search(before))
    while words and fold(words[0]) in STOP_WORDS | _COMMON_STARTS:
        words.pop(0)
        initial = False
    if not words:
        return []
    if initial and len(words) == 1 and len(words[0]) < 2:
        return []
    return words


# --------------------------------------------------------------------------- extraction


@functools.lru_cache(maxsize=8192)
def _extract(text: str) -> tuple[Value, ...]:
    text = unicodedata.normalize("NFKC", text)
    found: list[Value] = []

    def add(kind: Kind, norm: str, raw: str) -> None:
        norm = norm.strip()
        if norm:
            found.append(Value(kind, norm, raw))

    for m in _EMAIL.finditer(text):
        add("email", fold(m.group(0)).rstrip("."), m.group(0))
    for m in _URL.finditer(text):
        raw = m.group(0).rstrip(".,;:!?)]}")
        add("url", fold(unquote(raw)).removesuffix("/"), raw)
        for kind, part in _url_parts(raw):
            add(kind, part, part)
    for m in _HOST.finditer(text):
        raw = m.group(0)
        if not any(v.kind == "url" and raw in v.raw for v in found):
            add("host", fold(raw).removeprefix("www."), raw)
    for m in _IBAN.finditer(text):
        add("iban", re.sub(r"[ -]", "", m.group(0)).casefold(), m.group(0))
    for m in _AMOUNT.finditer(text):
        g = m.groups()
        number = g[1] or g[3] or g[4] or ""
        unit = g[0] or g[2] or g[5] or g[6] or ""
        add("amount", f"{number_norm(number)} {fold(unit)}", m.group(0))
    for m in _NUMBER.finditer(text):
        add("number", number_norm(m.group(1)), m.group(1))
    for m in _ISO_DATE.finditer(text):
        _add_date(add, m.group(1), m.group(2), m.group(3), m.group(0))
    for m in _DOT_DATE.finditer(text):
        _add_date(add, m.group(3), m.group(2), m.group(1), m.group(0))
    for m in _SLASH_DATE.finditer(text):
        add("date", "/".join(str(int(g)) for g in m.groups()), m.group(0))
    for m in _DAY_MONTH.finditer(text):
        _add_date(add, m.group(3), str(_MONTHS[m.group(2).casefold()]), m.group(1), m.group(0))
    for m in _MONTH_DAY.finditer(text):
        _add_date(add, m.group(3), str(_MONTHS[m.group(1).casefold()]), m.group(2), m.group(0))
    for m in _TIME.finditer(text):
        hour, minute, half = int(m.group(1)), m.group(2), (m.group(3) or "").casefold()
        if half.startswith("p") and hour < 12:
            hour += 12
        if half.startswith("a") and hour == 12:
            hour = 0
        add("time", f"{hour}:{minute}", m.group(0))
    for m in _CODE.finditer(text):
        raw = m.group(0)
        add("code", fold(raw), raw)
        pieces = [p for p in re.split(r"[-_/#]", raw) if p]
        if len(pieces) > 1:
            for piece in pieces:
                if len(piece) >= 2 and not piece.isdigit():  # digits: already numbers
                    add("part", fold(piece), piece)
    for m in _NAME.finditer(text):
        words = _name_words(m, text)
        if not words:
            continue
        if any(c.isalpha() for c in "".join(words)):
            add("name", fold(" ".join(words)), m.group(0))
            if len(words) > 1:
                for word in words:
                    if fold(word) not in STOP_WORDS:
                        add("part", fold(word), word)
    return tuple(found)


def _add_date(add: object, year: str | None, month: str, day: str, raw: str) -> None:
    norm = _date(year, int(month), int(day))
    if norm is not None:
        add("date", norm, raw)  # type: ignore[operator]


def values(text: str) -> list[Value]:
    """The values of ``text`` as written (no decoding), with their parts, in no set order."""
    return list(_extract(text))


def value_multiset(text: str) -> Counter[str]:
    """The normalised values of ``text``, counted (the answer-comparison key)."""
    return Counter(v.norm for v in _extract(text))


def compared_values(a: str, b: str) -> tuple[Counter[str], Counter[str]]:
    """The value multisets of two answers, names made case-blind: a word capitalised as a
    name in either answer is counted, as a name, wherever either answer uses it
    (``book_room(room=Oak)`` and ``book_room(room: oak)`` state the same room)."""
    va, vb = value_multiset(a), value_multiset(b)
    names = {v.norm for t in (a, b) for v in _extract(t) if v.kind in ("name", "part")}
    if not names:
        return va, vb
    for counter, text in ((va, a), (vb, b)):
        seq = _seq(text)
        for name in names:
            counter[name] = seq.count(_seq(name)) if _seq(name).strip() else 0
    return +va, +vb


def same_values(a: str, b: str) -> bool:
    """Do two answers state the same values (as a multiset, exactly after normalisation)?"""
    if a == b:
        return True
    va, vb = compared_values(a, b)
    return va == vb


def value_difference(a: str, b: str) -> list[str]:
    """The normalised values one answer has and the other lacks (both ways), sorted."""
    ca, cb = compared_values(a, b)
    return sorted(((ca - cb) + (cb - ca)).keys())


# --------------------------------------------------------------------------- re-encodings


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text.strip()) < 3 or not all(c.isprintable() or c.isspace() for c in text):
        return None
    return text


def _b64(token: str) -> str | None:
    raw = token.rstrip("=")
    if len(raw) < 6 or raw.isdigit() or raw.islower() or raw.istitle():
        return None  # plain words and numbers are not worth decoding
    padded = raw + "=" * (-len(raw) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = _printable(decode(padded))
        except (binascii.Error, ValueError):
            continue
        if text is not None:
            return text
    return None


@functools.lru_cache(maxsize=8192)
def decoded_views(text: str) -> tuple[str, ...]:
    """Other readings of ``text`` under common re-encodings (not ``text`` itself): URL-decoded,
    base64- and hex-decoded tokens, spelled-out characters and digits collapsed, digit groups
    joined. A value hidden in one of them still counts as occurring (``ValueIndex.broadly``)."""
    views: list[str] = []
    if "%" in text or "+" in text:
        decoded = unquote_plus(text)
        if decoded != text:
            views.append(decoded)
    views += encoded_views(text)
    spelled = [re.sub(r"[^\w]", "", m.group(0)) for m in _SPELLED.finditer(text)]
    spelled += [re.sub(r"\s", "", m.group(0)) for m in _SPELLED_SPACES.finditer(text)]
    words = [
        "".join(_DIGIT_WORDS[w.casefold()] for w in re.findall(r"[A-Za-z]+", m.group(0)))
        for m in _SPELLED_DIGITS.finditer(text)
    ]
    groups = [re.sub(r"\D", "", m.group(0)) for m in _DIGIT_GROUPS.finditer(text)]
    glued = [g for g in spelled + words + groups if len(g) >= 3]
    if glued:
        views.append(" ".join(glued))
    return tuple(views)


@functools.lru_cache(maxsize=8192)
def encoded_views(text: str) -> tuple[str, ...]:
    """The base64- and hex-encoded tokens of ``text``, decoded (printable ones only)."""
    views: list[str] = []
    for m in _B64.finditer(text):
        found = _b64(m.group(0))
        if found is not None:
            views.append(found)
    for m in _HEX.finditer(text):
        hexed = m.group(0)
        if any(c.isalpha() for c in hexed) or len(hexed) >= 6:
            found = _printable(bytes.fromhex(hexed))
            if found is not None and found.isascii():
                views.append(found)
    return tuple(views)


def all_values(text: str) -> list[Value]:
    """``values(text)`` and the values of its decoded views (those of 3 characters or more)."""
    found = list(_extract(text))
    for view in decoded_views(text):
        found += [v for v in _extract(view) if len(v.norm) >= 3]
    for view in encoded_views(text):  # a deliberately encoded text: each of its words counts
        found += [Value("part", t, t) for t in tokens(view) if len(t) >= 3 and _distinct(t)]
    return found


def _distinct(token: str) -> bool:
    return any(c.isdigit() for c in token) or token not in STOP_WORDS


# --------------------------------------------------------------------------- occurrence


def _seq(text: str) -> str:
    return " " + " ".join(tokens(text)) + " "


class ValueIndex:
    """What one text contains, for the value-level occurrence tests (built once per text)."""

    __slots__ = ("_broad_norms", "_broad_text", "_strict_norms", "_strict_text")

    def __init__(self, text: str) -> None:
        self._strict_norms = frozenset(v.norm for v in _extract(text))
        self._strict_text = _seq(text)
        self._broad_norms = frozenset(v.norm for v in all_values(text))
        self._broad_text = " ".join([self._strict_text, *(_seq(v) for v in decoded_views(text))])

    def strictly(self, value: Value) -> bool:
        """The value as a value of the text, or as a whole-token run of it (case-blind)."""
        if value.norm in self._strict_norms:
            return True
        seq = _seq(value.norm)
        return seq.strip() != "" and seq in self._strict_text

    def broadly(self, value: Value) -> bool:
        """``strictly``, or in a decoded view of the text, or a partial copy of one of its
        values (at least 4 characters of it, or 3 of a value at most twice as long)."""
        if self.strictly(value) or value.norm in self._broad_norms:
            return True
        seq = _seq(value.norm)
        if seq.strip() and seq in self._broad_text:
            return True
        return is_partial_of(value.norm, self._broad_norms)


def is_partial_of(norm: str, norms: Iterable[str]) -> bool:
    squeezed = re.sub(r"[\s\-.]", "", norm)
    if len(squeezed) < 3:
        return False
    for other in norms:
        whole = re.sub(r"[\s\-.]", "", other)
        if whole == squeezed:
            return True  # the same value, spaced or hyphenated otherwise
        if len(whole) < len(squeezed) or squeezed not in whole:
            continue
        if len(squeezed) >= 4 or 2 * len(squeezed) >= len(whole):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def index(text: str) -> ValueIndex:
    return ValueIndex(text)


def output_values(text: str) -> list[Value]:
    """The values an output states, as written and in its decoded views, each once."""
    seen: dict[str, Value] = {}
    for v in all_values(text):
        seen.setdefault(v.norm, v)
    return list(seen.values())


def unexplained(value: Value, kept_texts: Sequence[str]) -> bool:
    """No kept text contains the value strictly."""
    return not any(index(t).strictly(value) for t in kept_texts)
