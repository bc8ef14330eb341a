"""Argument-level provenance for tool calls: where each argument value came from.

For every leaf of a (nested) JSON arguments object, find the labeled inputs that contain the
value:

- ``verbatim``: the exact string occurs in the input, not inside a longer word (``42`` is not
  found in ``1423``);
- ``normalised``: it occurs after normalising both sides: NFKC, URL-decoding
  (``%20``, ``+``), case-folding, punctuation to spaces, whitespace collapsed; matched on
  whole tokens;
- ``none``: found nowhere, or not attributable (see below): the model's own words or the
  user's, with no evidence either way.

Labels. A matched value gets the join of the labels of *every* input containing it
(``match="all"``, the default: we cannot tell which copy the model read) or, with
``match="least"``, the most permissive one. A value of kind ``none`` gets the conservative
join of the whole call (``unmatched="join"``, the default and the safe choice: the value may
have been derived from any input, e.g. a paraphrase or a computed number), or, with
``unmatched="trusted"``, the join of the system and user messages only.

Short values. A value whose normalised form is shorter than ``min_chars`` (4) characters, or
is made only of common words (``yes``, ``the``, ``ok``), or is a boolean or null, is not
searched: it would match almost anything. It is ``none`` with the reason "too short", and so
gets the unmatched label (the conservative join by default).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict

from labelgate.guard.items import LabeledItem
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.similarity import STOP_WORDS

Kind = Literal["verbatim", "normalised", "none"]
_PUNCT = re.compile(r"[^\w]+", re.UNICODE)


class ArgumentSources(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    value: str
    kind: Kind
    item_ids: list[str]
    label: Label
    reason: str

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"label"})
        data["label"] = self.label.to_dict()
        return data


def normalise(text: str) -> str:
    """The form values and inputs are compared in: decoded, folded, tokens joined by spaces."""
    text = unicodedata.normalize("NFKC", text)
    if "%" in text or "+" in text:
        text = unquote_plus(text)
    return " ".join(_PUNCT.sub(" ", text.casefold()).split())


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs of nested JSON: ``to``, ``body.lines[0]``, ``items[2].id``."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from leaves(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for n, sub in enumerate(value):
            yield from leaves(sub, f"{path}[{n}]")
    else:
        yield path, value


def contains_verbatim(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` and is not glued to a longer word on either side."""
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        before_ok = start == 0 or not (value[0].isalnum() and text[start - 1].isalnum())
        after_ok = end == len(text) or not (value[-1].isalnum() and text[end].isalnum())
        if before_ok and after_ok:
            return True
        start = text.find(value, start + 1)
    return False


def _text_of(leaf: Any) -> str | None:
    """Strings and numbers as text; booleans and null have no text worth searching."""
    if isinstance(leaf, bool) or leaf is None:
        return None
    if isinstance(leaf, float) and leaf.is_integer():
        return str(int(leaf))
    return leaf if isinstance(leaf, str) else str(leaf)


def _spellings(leaf: Any, text: str) -> list[str]:
    """A number may be written with trailing zeros in the input (125.4 read from "125.40")."""
    if isinstance(leaf, float) and not leaf.is_integer():
        return list(dict.fromkeys([text, f"{leaf:.2f}"]))
    return [text]


def attributable(value: str | None, min_chars: int) -> bool:
    if value is None:
        return False
    norm = normalise(value)
    return len(norm) >= min_chars and any(t not in STOP_WORDS for t in norm.split())


class _Matcher:
    def __init__(self, items: Sequence[LabeledItem]) -> None:
        self.items = list(items)
        self.normalised = [f" {normalise(i.text)} " for i in self.items]

    def find(self, spellings: Sequence[str]) -> tuple[Kind, list[LabeledItem]]:
        exact = [i for i in self.items if any(contains_verbatim(i.text, v) for v in spellings)]
        if exact:
            return "verbatim", exact
        needles = [f" {normalise(v)} " for v in spellings]
        loose = [
            i
            for i, t in zip(self.items, self.normalised, strict=True)
            if any(n in t for n in needles)
        ]
        return ("normalised", loose) if loose else ("none", [])


def argument_sources(
    arguments: dict[str, Any] | str,
    items: Sequence[LabeledItem],
    lattice: Lattice | None = None,
    *,
    min_chars: int = 4,
    match: Literal["all", "least"] = "all",
    unmatched: Literal["join", "trusted"] = "join",
) -> dict[str, ArgumentSources]:
    """The sources of every leaf argument, keyed by its path. ``arguments`` may be JSON text."""
    lattice = lattice or Lattice()
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    matcher = _Matcher(items)
    fallback = _unmatched_label(items, lattice, unmatched)
    result: dict[str, ArgumentSources] = {}
    for path, leaf in leaves(args):
        text = _text_of(leaf)
        shown = json.dumps(leaf) if text is None else text
        if not attributable(text, min_chars):
            result[path] = ArgumentSources(
                path=path,
                value=shown,
                kind="none",
                item_ids=[],
                label=fallback,
                reason=f"too short to attribute; {unmatched} label",
            )
            continue
        kind, found = matcher.find(_spellings(leaf, text))  # type: ignore[arg-type]
        result[path] = _provenance(path, shown, kind, found, lattice, match, fallback, unmatched)
    return result


def _provenance(
    path: str,
    value: str,
    kind: Kind,
    found: list[LabeledItem],
    lattice: Lattice,
    match: str,
    fallback: Label,
    unmatched: str,
) -> ArgumentSources:
    if not found:
        return ArgumentSources(
            path=path,
            value=value,
            kind="none",
            item_ids=[],
            label=fallback,
            reason=f"found in no input; {unmatched} label",
        )
    if match == "least":
        # Any copy could have been the one read: take the most permissive (documented risk).
        found = [min(found, key=lambda i: _rank(i.label))]
    label = lattice.join_all(i.label for i in found)
    names = ", ".join(i.name or i.id for i in found)
    return ArgumentSources(
        path=path,
        value=value,
        kind=kind,
        item_ids=[i.id for i in found],
        label=label,
        reason=f"{kind} in {names}",
    )


def _rank(label: Label) -> tuple[int, int, int, int]:
    readers = 0 if label.readers is None else 1
    return (label.confidentiality.rank, -label.integrity.rank, len(label.categories), readers)


def _unmatched_label(items: Sequence[LabeledItem], lattice: Lattice, unmatched: str) -> Label:
    if unmatched == "trusted":
        return lattice.join_all(i.label for i in items if i.role in ("system", "user"))
    return lattice.join_all(i.label for i in items)


def arguments_label(provenance: dict[str, ArgumentSources], lattice: Lattice) -> Label:
    """The label of a whole tool call: the join of its arguments' labels."""
    return lattice.join_all(p.label for p in provenance.values())
