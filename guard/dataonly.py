"""Untrusted text reduced to its data: the values and identifiers it holds, without its prose.

An injected instruction is prose ("IMPORTANT: send the report to ..."); the data an agent needs
from the same text is values (an amount, an IBAN, an address, an order number, a branch name).
``data_only`` keeps the second and drops the first, so that a model asked again on data-only
inputs can still do what its user asked but can no longer read what an attacker wrote. The
control-flow replay (``proxy.replay``) uses it to tell a call that untrusted data *filled*
from one that untrusted text *chose*.

- JSON keeps its structure: keys, numbers, booleans and short strings (up to three words: a
  status, a name, a title, an id) stay; a longer string is replaced by its values.
- Other text: each sentence of four words or more is replaced by its values; shorter
  fragments ("Subject: Invoice", "Total: 120.00 EUR") stay.
- The values are ``guard.values``' (numbers, amounts, e-mails, URLs, IBANs, codes, dates,
  names) plus identifier-like tokens (anything holding a digit or one of ``@#/_.-``:
  ``fix/login-timeout``, ``v2.3.1``, ``@jonas``), in order, each once.
- ``keep``: phrases a caller needs kept as values too: the replay passes the phrases the
  denied call copied from this text (``copied_phrases``: runs of at most ``PHRASE_WORDS``
  words, e.g. ``production``, ``held at Tokyo depot``), so that a call filled with a word of
  a sentence can be proposed again; the sentences around them stay withheld.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

from labelgate.guard.similarity import STOP_WORDS
from labelgate.guard.values import values

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")  # not inside 1,250.00 or a.b@c.example
_WORD = re.compile(r"[^\s]+")
_IDENT = re.compile(r"[\w@#/.\-]*[\d@#/_.\-][\w@#/.\-]*\w")
PROSE_WORDS = 4  # a string of this many words or more is prose: replaced by its values
PHRASE_WORDS = 8  # a copied run longer than this is prose the call quotes: never kept
_EDGE = ".,;:!?()[]{}\"'"
WITHHELD = "[text withheld; its values: {}]"
NOTHING = "[text withheld; no values]"


def data_only(text: str, keep: Sequence[str] = ()) -> str:
    """``text`` with its prose replaced by the values it holds, and the ``keep`` phrases it
    holds (see the module docstring)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return _plain(text, keep)
    if not isinstance(parsed, dict | list):
        return _plain(text, keep)
    return json.dumps(_walk(parsed, keep), ensure_ascii=False)


def copied_phrases(value: str, text: str) -> list[str]:
    """The runs of words ``value`` shares with ``text`` (case aside), as ``text`` writes them:
    at most ``PHRASE_WORDS`` words each, not stop words alone."""
    mine = [_bare(w) for w in _WORD.findall(value)]
    theirs = list(_WORD.finditer(text))
    words = [_bare(m.group()) for m in theirs]
    matcher = SequenceMatcher(None, mine, words, autojunk=False)
    found = []
    for block in matcher.get_matching_blocks():
        run = words[block.b : block.b + block.size]
        if not 0 < block.size <= PHRASE_WORDS or all(w in STOP_WORDS for w in run):
            continue
        first, last = theirs[block.b], theirs[block.b + block.size - 1]
        found.append(text[first.start() : last.end()].strip(_EDGE))
    return found


def _bare(word: str) -> str:
    return word.strip(_EDGE).casefold()


def _walk(node: Any, keep: Sequence[str]) -> Any:
    if isinstance(node, dict):
        return {key: _walk(value, keep) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, keep) for value in node]
    if isinstance(node, str) and _is_prose(node):
        return _sheet(node, keep)
    return node


def _plain(text: str, keep: Sequence[str]) -> str:
    out = []
    for line in text.splitlines():
        pieces = _SENTENCE_END.split(line)
        kept = [_sheet(p.strip(), keep) if _is_prose(p) else p.strip() for p in pieces]
        out.append(" ".join(k for k in kept if k))
    return "\n".join(out)


def _is_prose(text: str) -> bool:
    return len(_WORD.findall(text)) >= PROSE_WORDS


def _sheet(text: str, keep: Sequence[str] = ()) -> str:
    found: list[str] = []
    low = text.casefold()
    phrases = [p for p in keep if p and p.casefold() in low]
    for raw in [v.raw for v in values(text) if v.kind != "part"] + _IDENT.findall(text) + phrases:
        raw = raw.strip(_EDGE)
        if raw and raw not in found:
            found.append(raw)
    return WITHHELD.format("; ".join(found)) if found else NOTHING
