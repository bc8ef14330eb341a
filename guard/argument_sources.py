"""Argument-level provenance for tool calls: where each argument value came from.

Every leaf of a (nested) JSON arguments object is labeled by the inputs its value actually
came from, found in this order:

1. **The whole value** (``kind="verbatim"`` or ``"normalised"``): the value occurs in an
   input as written, not glued to a longer word or number (``4237`` is not found in ``14237``,
   ``120`` not in ``120.50``), or after normalising both sides (NFKC, URL-decoding,
   case-folding, punctuation to spaces; whole tokens), or as the same value
   (``guard.values``: ``125.4`` is ``125.40``, ``2026-03-18`` is ``18 March 2026``). Short
   values (``100``, ``7``) are matched like any other: by exact value, on whole tokens.
2. **Its parts** (``kind="composed"``): a value found nowhere whole is cut into its values
   (numbers, amounts, codes, e-mails, the host, path and query values of a URL, names, dates)
   and its remaining content words, and each part is attributed as in 1. ``"Invoice 4471 for
   ACME, 120.00 EUR"`` gets the join of where 4471, ACME, 120.00 EUR and "invoice" came from.
3. **Re-encoded or partial copies** (``kind="encoded"``): a value or part found in no input as
   written but in a decoded view of one (base64, URL-encoding, per-character spelling, digit
   groups) or as a piece of one of an input's values: the join of *every* such input.
4. **Nowhere** (``kind="none"``; for a composed value, the parts found nowhere): the
   *unmatched label* (below).

**Which copy.** When a value (or a part) occurs in several inputs, the model could have taken
it from any of them, so its label takes each component from the best copy: the
confidentiality (level, readers, categories) of the least confidential input holding it, and
the integrity of the most trusted one, with the sources of those one or two inputs. A value
the user typed is trusted even when the tool result the user asked to read holds it too; a
value only untrusted inputs hold keeps their label. The residual risk is documented in
``docs/propagation.md``: an injection can choose *which* trusted value to use (a recipient
from the user's own address book), not a value of its own.

**Unmatched values** (the model's own words, or a value it computed or invented). The model
wrote them after reading every input of the call, and an injection can steer what a model
invents ("write the code backwards"), so such a value is *not* trusted by default: it gets the
label the caller passes as ``unmatched_label``, which the guard sets to the label of the
model's output (the permissive propagator's verdict when one ran, itself sound by its value
guard; else the conservative join). ``unmatched="join"`` (no ``unmatched_label``) uses the
join of every input, ``unmatched="trusted"`` the join of the system and user messages only
(an explicit, unsafe choice). A value is "derivable from trusted inputs", and so trusted, only
when each of its parts is found in trusted inputs (step 2): that rule, not a guess, is what
lets composed values through. Booleans and null carry no text to trace: unmatched.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus

from pydantic import BaseModel, ConfigDict

from labelgate.guard.items import LabeledItem
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.similarity import STOP_WORDS, tokens
from labelgate.guard.values import Value, all_values, index, values

Kind = Literal["verbatim", "normalised", "composed", "encoded", "none"]
Match = Literal["best", "all", "least"]
_PUNCT = re.compile(r"[^\w]+", re.UNICODE)


class PartSources(BaseModel):
    """Where one part of a composed value came from (no ``item_ids``: found nowhere)."""

    part: str
    kind: Kind
    item_ids: list[str]


class ArgumentSources(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    value: str
    kind: Kind
    item_ids: list[str]
    label: Label
    reason: str
    unmatched: bool = False  # the value, or some part of it, was found in no input
    parts: list[PartSources] = []

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


def _glued(text: str, at: int, step: int) -> bool:
    """Is ``text[at]`` part of the word or number that the match borders (``step``: -1 before
    the match, +1 after)? A letter or digit is; so is a ``.``/``,`` between two digits."""
    if not 0 <= at < len(text):
        return False
    ch = text[at]
    if ch.isalnum():
        return True
    beyond = at + step
    return ch in ".," and 0 <= beyond < len(text) and text[beyond].isdigit()


def contains_verbatim(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` and is not glued to a longer word or number on either
    side (``4237`` is not in ``14237``, ``120`` is not in ``120.50``)."""
    if not value:
        return False
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        before_ok = not (value[0].isalnum() and _glued(text, start - 1, -1))
        after_ok = not (value[-1].isalnum() and _glued(text, end, 1))
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


class _Matcher:
    def __init__(self, items: Sequence[LabeledItem]) -> None:
        self.items = list(items)
        self.normalised = [f" {normalise(i.text)} " for i in self.items]

    def whole(self, spellings: Sequence[str]) -> tuple[Kind, list[LabeledItem]]:
        """The inputs holding the whole value: as written, normalised, or as the same value.

        Every holder counts, however it writes the value (``Mara`` in the request, ``mara``
        in a tool result): the best copy is chosen among all of them. The kind is the
        strongest match found.
        """
        exact = [i for i in self.items if any(contains_verbatim(i.text, v) for v in spellings)]
        needles = [f" {n} " for n in (normalise(v) for v in spellings) if n]
        loose = [
            i
            for i, t in zip(self.items, self.normalised, strict=True)
            if any(n in t for n in needles)
        ]
        single = _single_value(spellings[0])
        same = [] if single is None else [i for i in self.items if index(i.text).strictly(single)]
        found = [i for i in self.items if i in exact or i in loose or i in same]
        if not found:
            return "none", []
        return ("verbatim" if exact else "normalised"), found

    def part(self, value: Value) -> tuple[Kind, list[LabeledItem]]:
        strict = [i for i in self.items if index(i.text).strictly(value)]
        if strict:
            return "verbatim", strict
        return self.encoded(value)

    def encoded(self, value: Value) -> tuple[Kind, list[LabeledItem]]:
        broad = [i for i in self.items if index(i.text).broadly(value)]
        return ("encoded", broad) if broad else ("none", [])


def _single_value(text: str) -> Value | None:
    """The value ``text`` is, when it is exactly one (``120.00 EUR``, ``18 March``)."""
    stripped = text.strip()
    whole = [v for v in values(stripped) if v.raw.strip() == stripped and v.kind != "part"]
    return whole[0] if whole else None


def _decoded_only(text: str) -> list[Value]:
    """Values that only a decoded view of ``text`` shows (base64, URL-encoding, spelling)."""
    plain = {v.norm for v in values(text)}
    return [v for v in all_values(text) if v.norm not in plain]


def _conf_rank(label: Label) -> tuple[int, int, int]:
    readers = 0 if label.readers is None else 10_000 - len(label.readers)
    return (label.confidentiality.rank, readers, len(label.categories))


def best_copy(found: Sequence[LabeledItem]) -> tuple[Label, list[LabeledItem]]:
    """The label of a value held by every input in ``found``: the confidentiality of the least
    confidential holder and the integrity of the most trusted one (preferring one input that
    is both), with the sources of the one or two inputs chosen."""
    least = min(found, key=lambda i: _conf_rank(i.label))
    top = max(i.label.integrity for i in found)
    if least.label.integrity == top:
        return least.label, [least]
    trusted = next(i for i in found if i.label.integrity == top)
    conf = least.label
    label = Label(
        confidentiality=conf.confidentiality,
        integrity=trusted.label.integrity,
        readers=conf.readers,
        categories=conf.categories,
        sources=conf.sources | trusted.label.sources,
    )
    return label, [least, trusted]


def argument_sources(
    arguments: dict[str, Any] | str,
    items: Sequence[LabeledItem],
    lattice: Lattice | None = None,
    *,
    match: Match = "best",
    unmatched: Literal["join", "trusted"] = "join",
    unmatched_label: Label | None = None,
) -> dict[str, ArgumentSources]:
    """The sources of every leaf argument, keyed by its path. ``arguments`` may be JSON text.

    ``match``: how a value held by several inputs is labeled: ``"best"`` (default: see
    ``best_copy``), ``"all"`` (the join of every holder) or ``"least"`` (the least restrictive
    holder's label). ``unmatched_label`` (or ``unmatched``) labels what is found nowhere.
    """
    lattice = lattice or Lattice()
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    matcher = _Matcher(items)
    fallback = unmatched_label or _unmatched_label(items, lattice, unmatched)
    how = "the output's label" if unmatched_label is not None else f"{unmatched} label"
    result: dict[str, ArgumentSources] = {}
    for path, leaf in leaves(args):
        text = _text_of(leaf)
        shown = json.dumps(leaf) if text is None else text
        if text is None or not text.strip():
            result[path] = ArgumentSources(
                path=path,
                value=shown,
                kind="none",
                item_ids=[],
                label=fallback,
                reason=f"no text to trace; {how}",
                unmatched=True,
            )
            continue
        result[path] = _attribute(
            path, shown, _spellings(leaf, text), matcher, lattice, match, fallback, how
        )
    return result


def _label_of(
    found: Sequence[LabeledItem], lattice: Lattice, match: Match
) -> tuple[Label, list[LabeledItem]]:
    if match == "all":
        return lattice.join_all(i.label for i in found), list(found)
    if match == "least":
        least = min(found, key=lambda i: _rank(i.label))
        return least.label, [least]
    return best_copy(found)


def _attribute(
    path: str,
    value: str,
    spellings: list[str],
    matcher: _Matcher,
    lattice: Lattice,
    match: Match,
    fallback: Label,
    how: str,
) -> ArgumentSources:
    kind, found = matcher.whole(spellings)
    if found:
        label, chosen = _label_of(found, lattice, match)
        names = ", ".join(_name(i) for i in chosen)
        also = [i for i in found if i not in chosen]
        more = f" (also in {', '.join(_name(i) for i in also)})" if also else ""
        return ArgumentSources(
            path=path,
            value=value,
            kind=kind,
            item_ids=[i.id for i in chosen],
            label=label,
            reason=f"{kind} in {names}{more}",
        )
    text = spellings[0]
    kind, found = matcher.encoded(Value("part", normalise(text), text))
    if found:  # the whole value, re-encoded or cut out of an input's value
        names = ", ".join(_name(i) for i in found)
        return ArgumentSources(
            path=path,
            value=value,
            kind="encoded",
            item_ids=[i.id for i in found],
            label=lattice.join_all(i.label for i in found),
            reason=f"re-encoded or partial copy of {names}",
        )
    return _composed(path, value, text, matcher, lattice, match, fallback, how)


def _composed(
    path: str,
    value: str,
    text: str,
    matcher: _Matcher,
    lattice: Lattice,
    match: Match,
    fallback: Label,
    how: str,
) -> ArgumentSources:
    """A value found nowhere whole: the join of where its parts came from (largest values
    first, then what decoding reveals, then the content words no found value covers)."""
    if "%" in text:
        text = unquote(text)
    label = lattice.bottom
    chosen: list[str] = []
    records: list[PartSources] = []
    covered: set[str] = set()

    def record(part: Value, kind: Kind, found: Sequence[LabeledItem]) -> None:
        nonlocal label
        if kind == "encoded":
            part_label, picked = lattice.join_all(i.label for i in found), list(found)
        else:
            part_label, picked = _label_of(found, lattice, match)
        label = label | part_label
        ids = [i.id for i in picked]
        records.append(PartSources(part=part.raw, kind=kind, item_ids=ids))
        chosen.extend(i for i in ids if i not in chosen)

    for part in sorted(values(text), key=lambda v: -len(v.raw)):
        toks = set(tokens(part.raw))
        if toks and toks <= covered:
            continue
        kind, found = matcher.part(part)
        if found:
            record(part, kind, found)
            covered |= toks
    for part in _decoded_only(text):
        kind, found = matcher.part(part)
        if found:
            record(part, "encoded", found)
    missing: list[str] = []
    for word in dict.fromkeys(tokens(text)):
        if word in covered or word in STOP_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        kind, found = matcher.part(Value("part", word, word))
        if found:
            record(Value("part", word, word), kind, found)
        else:
            missing.append(word)
            records.append(PartSources(part=word, kind="none", item_ids=[]))
    if missing or not chosen:
        label = label | fallback
    by_id = {i.id: i for i in matcher.items}
    names = ", ".join(_name(by_id[i]) for i in chosen) or "no input"
    if not chosen:
        reason = f"found in no input; {how}"
    else:
        reason = f"composed of {len(records)} parts from {names}"
        if missing:
            listed = ", ".join(repr(m) for m in missing[:4]) + (", ..." if len(missing) > 4 else "")
            reason += f"; {listed} found in no input ({how})"
    return ArgumentSources(
        path=path,
        value=value,
        kind="composed" if chosen else "none",
        item_ids=chosen,
        label=label,
        reason=reason,
        unmatched=bool(missing) or not chosen,
        parts=records,
    )


def _name(item: LabeledItem) -> str:
    what = item.name or item.role or "input"
    return f"{what} ({item.id})"


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
