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
"""

from __future__ import annotations

import json
import re
from typing import Any

from labelgate.guard.values import values

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")  # not inside 1,250.00 or a.b@c.example
_WORD = re.compile(r"[^\s]+")
_IDENT = re.compile(r"[\w@#/.\-]*[\d@#/_.\-][\w@#/.\-]*\w")
PROSE_WORDS = 4  # a string of this many words or more is prose: replaced by its values
WITHHELD = "[text withheld; its values: {}]"
NOTHING = "[text withheld; no values]"


def data_only(text: str) -> str:
    """``text`` with its prose replaced by the values it holds (see the module docstring)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return _plain(text)
    if not isinstance(parsed, dict | list):
        return _plain(text)
    return json.dumps(_walk(parsed), ensure_ascii=False)


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _walk(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value) for value in node]
    if isinstance(node, str) and _is_prose(node):
        return _sheet(node)
    return node


def _plain(text: str) -> str:
    out = []
    for line in text.splitlines():
        pieces = _SENTENCE_END.split(line)
        kept = [_sheet(p.strip()) if _is_prose(p) else p.strip() for p in pieces]
        out.append(" ".join(k for k in kept if k))
    return "\n".join(out)


def _is_prose(text: str) -> bool:
    return len(_WORD.findall(text)) >= PROSE_WORDS


def _sheet(text: str) -> str:
    found: list[str] = []
    for raw in [v.raw for v in values(text) if v.kind != "part"] + _IDENT.findall(text):
        raw = raw.strip(".,;:!?()[]{}\"'")
        if raw and raw not in found:
            found.append(raw)
    return WITHHELD.format("; ".join(found)) if found else NOTHING
