"""Where, in a text, the copies of stored texts are: the parts a re-identified label comes from.

Re-identification labels a whole message part: an orchestrator's request to an agent that
quotes another agent's untrusted notes is untrusted as a whole, which is right for its label.
The control-vs-data replay (``proxy.replay``) needs more: it reduces untrusted text to its data
before asking the model again, and reducing the whole request loses the user's instructions
along with the notes. ``copied_spans`` finds the character spans that hold copies of stored
texts with a given property (e.g. untrusted), so only those are reduced.

Soundness of the spans. A stored text keeps the minimum k-gram of every window of ``w``
consecutive k-grams (winnowing). Inside a copied part the new text has the same k-grams, so
among any ``w`` consecutive k-grams of the copy one is a stored fingerprint: the first lies at
most ``w - 1`` words after the copy's start, the last at most ``w - 1`` k-grams before its end,
and two neighbours at most ``w`` apart. Each found k-gram is therefore widened by ``w - 1``
words on both sides (plus its own ``k`` words) and neighbours are merged: the spans cover every
copied part long enough to be found at all (``w + k - 1`` words, the winnowing guarantee), and
are then widened to whole lines. One exception, for the request an orchestrator writes just
above a quoted text: the widening stops at the line breaks next to the found k-grams, so a copy
that begins (or ends) with at most ``w - 1`` words on a line of its own may leave those words
unreduced: fewer than the shortest sentence the data-only view withholds. A text whose words
cannot be mapped back to characters gives None: the caller then treats the whole text as
copied.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from labelgate.guard.fingerprint.store import FingerprintStore, LookupOptions
from labelgate.guard.fingerprint.winnow import WinnowParams, kgram_hashes, normalise
from labelgate.guard.labels import Label

_TOKEN = re.compile(r"\S+")
# Every stored text holding a k-gram: one shared fingerprint is enough to locate a copy.
_ANY = LookupOptions(threshold=1e-9, min_matches=1, run_words=None)

Span = tuple[int, int]


def word_offsets(text: str, version: int) -> list[Span] | None:
    """The character span of each word ``normalise(text, version)`` gives, or None where
    the words of the whole text differ from those of its tokens one by one (a word spelled
    out over several tokens, a hyphen at a line end)."""
    located = _located_words(text, version)
    return None if located is None else located[1]


def _located_words(text: str, version: int) -> tuple[list[str], list[Span]] | None:
    """``normalise(text, version)`` and each word's character span (see ``word_offsets``)."""
    words: list[str] = []
    spans: list[Span] = []
    for token in _TOKEN.finditer(text):
        for word in normalise(token.group(), version):
            words.append(word)
            spans.append(token.span())
    return (words, spans) if words == normalise(text, version) else None


def copied_spans(
    store: FingerprintStore, text: str, wanted: Callable[[Label], bool]
) -> list[Span] | None:
    """Character spans of ``text`` (whole lines) holding copies of stored texts whose label
    is ``wanted``; None when the words cannot be located (see the module docstring)."""
    params = store.params
    located = _located_words(text, params.version)
    if located is None or len(located[0]) < params.k:
        return None  # unmapped, or one fingerprint for the whole text: nothing to locate
    words, offsets = located
    hashes = kgram_hashes(words, params.k).view(np.int64).tolist()
    tainted = {h for h in set(hashes) if _held(store, h, wanted)}
    found = [i for i, h in enumerate(hashes) if h in tainted]
    ranges = _widened(found, params, len(offsets))
    return _merged([_lines(text, *_clipped(text, offsets, span, core)) for span, core in ranges])


def _held(store: FingerprintStore, fingerprint: int, wanted: Callable[[Label], bool]) -> bool:
    matches = store.lookup(np.array([fingerprint], dtype=np.int64), options=_ANY)
    return any(wanted(m.label) for m in matches)


def _widened(found: list[int], params: WinnowParams, n_words: int) -> list[tuple[Span, Span]]:
    """Per copy: the word range (first, last, inclusive) the copy may span, and the words of
    the found k-grams in it (its core)."""
    k, w = params.k, params.w
    ranges: list[tuple[Span, Span]] = []
    for i in found:
        first, last = max(0, i - (w - 1)), min(n_words - 1, i + k - 1 + (w - 1))
        if ranges and first <= ranges[-1][0][1] + 1:
            (lo, hi), (core_lo, _) = ranges[-1]
            ranges[-1] = ((lo, max(hi, last)), (core_lo, i + k - 1))
        else:
            ranges.append(((first, last), (i, i + k - 1)))
    return ranges


def _clipped(text: str, offsets: list[Span], span: Span, core: Span) -> Span:
    """The characters of the words of ``span``, widened no further than the line breaks
    nearest its ``core``: the copied words a widening past a line break could catch are at
    most ``w - 1`` (two), fewer than the shortest sentence ``data_only`` withholds
    (``PROSE_WORDS``), so the request an orchestrator writes on the line just above a quoted
    text is not reduced with it."""
    start, end = offsets[span[0]][0], offsets[span[1]][1]
    core_start, core_end = offsets[core[0]][0], offsets[core[1]][1]
    start = max(start, text.rfind("\n", start, core_start) + 1)
    stop = text.find("\n", core_end, end)
    return start, end if stop < 0 else stop


def _lines(text: str, start: int, end: int) -> Span:
    """``start:end`` widened to the whole lines it touches."""
    stop = text.find("\n", end)
    return text.rfind("\n", 0, start) + 1, len(text) if stop < 0 else stop


def _merged(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def reduce_spans(text: str, spans: list[Span], reduce: Callable[[str], str]) -> str:
    """``text`` with each span replaced by ``reduce`` of it (spans sorted, disjoint)."""
    out, at = [], 0
    for start, end in spans:
        out += [text[at:start], reduce(text[start:end])]
        at = end
    return "".join([*out, text[at:]])
