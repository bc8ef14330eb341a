"""Labels: confidentiality x integrity, with readers, categories and sources.

A label is an element of a product lattice:

- confidentiality level: a total order configured per deployment (public < internal < ...);
- readers: the set of principals allowed to read (``None`` is "everyone", the top of the
  powerset ordered by inclusion, so joining narrows it by intersection);
- categories: compartments such as ``pii`` or ``finance`` (joining unions them);
- integrity level: a total order where *higher is more trusted* (untrusted < trusted);
  information flows from trusted to untrusted, so the join takes the least trusted;
- sources: the provenance set (which tools, documents, agents the data came from); joining
  unions them, so a label never forgets where its data came from.

``a.flows_to(b)`` (also ``a <= b``) means data labeled ``a`` may be used where ``b`` is
allowed: ``b`` is at least as confidential, at most as trusted, and knows at least the same
sources. Join (``|``) is the least upper bound, meet (``&``) the greatest lower bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator


@dataclass(frozen=True, slots=True)
class Level:
    """A named point of a totally ordered scale; compared by rank only."""

    rank: int
    name: str = field(compare=False)

    # All four written out (not functools.total_ordering, whose derived ones make three
    # calls each): joins compare levels on every request.
    def __lt__(self, other: Level) -> bool:
        return self.rank < other.rank

    def __le__(self, other: Level) -> bool:
        return self.rank <= other.rank

    def __gt__(self, other: Level) -> bool:
        return self.rank > other.rank

    def __ge__(self, other: Level) -> bool:
        return self.rank >= other.rank

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Level) and self.rank == other.rank

    def __hash__(self) -> int:
        return hash(self.rank)

    def __str__(self) -> str:
        return self.name


Readers = frozenset[str] | None  # None: every reader


def _unpickle_label(
    c_rank: int,
    c_name: str,
    i_rank: int,
    i_name: str,
    readers: Readers,
    categories: frozenset[str],
    sources: frozenset[str],
) -> Label:
    return Label(Level(c_rank, c_name), Level(i_rank, i_name), readers, categories, sources)


def _join_readers(a: Readers, b: Readers) -> Readers:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _meet_readers(a: Readers, b: Readers) -> Readers:
    if a is None or b is None:
        return None
    return a | b


def _readers_flow(a: Readers, b: Readers) -> bool:
    """Readers of b must be a subset of readers of a (b is at least as restrictive)."""
    if b is None:
        return a is None
    return a is None or b <= a


@dataclass(frozen=True, slots=True)
class Label:
    confidentiality: Level
    integrity: Level
    readers: Readers = None
    categories: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()

    def join(self, other: Label) -> Label:
        return Label(
            confidentiality=max(self.confidentiality, other.confidentiality),
            integrity=min(self.integrity, other.integrity),
            readers=_join_readers(self.readers, other.readers),
            categories=self.categories | other.categories,
            sources=self.sources | other.sources,
        )

    def meet(self, other: Label) -> Label:
        return Label(
            confidentiality=min(self.confidentiality, other.confidentiality),
            integrity=max(self.integrity, other.integrity),
            readers=_meet_readers(self.readers, other.readers),
            categories=self.categories & other.categories,
            sources=self.sources & other.sources,
        )

    def flows_to(self, other: Label) -> bool:
        return (
            self.confidentiality <= other.confidentiality
            and self.integrity >= other.integrity
            and _readers_flow(self.readers, other.readers)
            and self.categories <= other.categories
            and self.sources <= other.sources
        )

    __or__ = join
    __and__ = meet
    __le__ = flows_to

    def __lt__(self, other: Label) -> bool:
        return self != other and self.flows_to(other)

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain values: the default pickling of a frozen slots dataclass is several times
        # slower, and labels travel to the audit process with every request.
        c, i = self.confidentiality, self.integrity
        state = (c.rank, c.name, i.rank, i.name, self.readers, self.categories, self.sources)
        return _unpickle_label, state

    def with_sources(self, *sources: str) -> Label:
        return Label(
            self.confidentiality,
            self.integrity,
            self.readers,
            self.categories,
            self.sources | frozenset(sources),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidentiality": self.confidentiality.name,
            "integrity": self.integrity.name,
            "readers": sorted(self.readers) if self.readers is not None else None,
            "categories": sorted(self.categories),
            "sources": sorted(self.sources),
        }

    def short(self) -> str:
        """A compact human form, e.g. ``confidential/untrusted{web:evil.example}``."""
        parts = [f"{self.confidentiality.name}/{self.integrity.name}"]
        if self.readers is not None:
            parts.append("readers=" + ",".join(sorted(self.readers)))
        if self.categories:
            parts.append("cat=" + ",".join(sorted(self.categories)))
        if self.sources:
            parts.append("src=" + ",".join(sorted(self.sources)))
        return " ".join(parts)


LabelKey = tuple[int, str, int, str, Readers, frozenset[str], frozenset[str]]


def label_key(label: Label) -> LabelKey:
    """A cache key for answers about ``label``: all of its fields, level names included.

    ``Level`` compares by rank only, so labels of two lattices whose levels share ranks but
    not names are equal, and an answer that names the levels must not be shared between them.
    A flat tuple is also quicker to hash and compare than the Label itself.
    """
    conf, integ = label.confidentiality, label.integrity
    return (
        conf.rank,
        conf.name,
        integ.rank,
        integ.name,
        label.readers,
        label.categories,
        label.sources,
    )


class LatticeConfig(BaseModel):
    """The lattice as declared in a policy file."""

    model_config = {"extra": "forbid"}

    confidentiality: list[str] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "secret"],
        description="Confidentiality levels, least confidential first.",
        min_length=1,
    )
    integrity: list[str] = Field(
        default_factory=lambda: ["untrusted", "trusted"],
        description="Integrity levels, least trusted first.",
        min_length=1,
    )
    categories: list[str] = Field(
        default_factory=list,
        description="Known categories (compartments); labels may only use these when non-empty.",
    )

    @field_validator("confidentiality", "integrity")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("level names must be unique")
        return names


class Lattice:
    """Names to levels, and the bottom / top / parsing of labels."""

    def __init__(self, config: LatticeConfig | None = None) -> None:
        self.config = config or LatticeConfig()
        self._conf = {n: Level(i, n) for i, n in enumerate(self.config.confidentiality)}
        self._integ = {n: Level(i, n) for i, n in enumerate(self.config.integrity)}
        # Labels are immutable, so the bottom is made once (every answer is compared to it).
        self._bottom = Label(self.confidentiality_levels[0], self.integrity_levels[-1])

    @property
    def confidentiality_levels(self) -> Sequence[Level]:
        return list(self._conf.values())

    @property
    def integrity_levels(self) -> Sequence[Level]:
        return list(self._integ.values())

    def confidentiality_level(self, name: str) -> Level | None:
        return self._conf.get(name)

    def integrity_level(self, name: str) -> Level | None:
        return self._integ.get(name)

    def conf(self, name: str) -> Level:
        try:
            return self._conf[name]
        except KeyError:
            raise ValueError(
                f"unknown confidentiality level {name!r} (known: {', '.join(self._conf)})"
            ) from None

    def integ(self, name: str) -> Level:
        try:
            return self._integ[name]
        except KeyError:
            raise ValueError(
                f"unknown integrity level {name!r} (known: {', '.join(self._integ)})"
            ) from None

    @property
    def bottom(self) -> Label:
        """Public, fully trusted, everyone may read, no sources: the identity of join."""
        return self._bottom

    def join_all(self, labels: Iterable[Label]) -> Label:
        result = self.bottom
        for label in labels:
            result = result | label
        return result

    def label(
        self,
        confidentiality: str | None = None,
        integrity: str | None = None,
        readers: Iterable[str] | None = None,
        categories: Iterable[str] = (),
        sources: Iterable[str] = (),
    ) -> Label:
        cats = frozenset(categories)
        unknown = cats - set(self.config.categories)
        if self.config.categories and unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}")
        return Label(
            confidentiality=self.conf(confidentiality)
            if confidentiality
            else self.bottom.confidentiality,
            integrity=self.integ(integrity) if integrity else self.bottom.integrity,
            readers=frozenset(readers) if readers is not None else None,
            categories=cats,
            sources=frozenset(sources),
        )

    def parse(self, data: dict[str, Any] | LabelSpec) -> Label:
        spec = data if isinstance(data, LabelSpec) else LabelSpec.model_validate(data)
        return self.label(
            spec.confidentiality, spec.integrity, spec.readers, spec.categories, spec.sources
        )


class LabelSpec(BaseModel):
    """A label as written in YAML, JSON or an HTTP extension field (names, not ranks)."""

    model_config = {"extra": "forbid"}

    confidentiality: str | None = None
    integrity: str | None = None
    readers: list[str] | None = None
    categories: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _strip(self) -> LabelSpec:
        self.categories = sorted(set(self.categories))
        self.sources = sorted(set(self.sources))
        return self
