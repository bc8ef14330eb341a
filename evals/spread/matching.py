"""Matching rules: does an answer give the manipulated fact, the true one, or neither?

Both the answer and the expected strings are normalised: Unicode NFKC, case folded,
punctuation turned into spaces, the articles "a", "an", "the" dropped, whitespace collapsed.
Containment is by whole words (``" rome "`` in ``" it is in rome "``, but ``"ball"`` is not in
``"basketball"``).

- contains ``target_new`` and not the true answer -> ``manipulated``;
- contains the true answer (whether or not it also names ``target_new``) -> ``correct``;
- anything else -> ``other`` (NA for the manipulation question: neither fact was given).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Verdict = Literal["manipulated", "correct", "other"]
VERDICTS: tuple[Verdict, ...] = ("manipulated", "correct", "other")

_NON_WORD = re.compile(r"[^\w]+|_")
_ARTICLES = frozenset({"a", "an", "the"})


def normalise(text: str) -> str:
    """Lower-cased words without punctuation or articles, single-spaced."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = [w for w in _NON_WORD.sub(" ", folded).split() if w not in _ARTICLES]
    return " ".join(words)


def contains(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words, after normalisation."""
    needle = normalise(phrase)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def classify(answer: str, target_new: str, truth: str) -> Verdict:
    if contains(answer, truth):
        return "correct"
    if contains(answer, target_new):
        return "manipulated"
    return "other"
