"""The storage interface for fingerprints of labeled texts, and what a lookup returns.

A store keeps, for every labeled text it was given, the text's fingerprints (never the text),
its label and a little metadata. ``lookup`` answers "which stored texts does this new text
contain, wholly or partly, and with which labels?".

Backends implement :class:`FingerprintStore`; :class:`StoreBase` supplies the conveniences
(``add``, ``add_text``, fingerprinting a string query) on top of ``add_many`` and
``lookup_fingerprints``, so a new backend (PostgreSQL shared by several proxy replicas, say)
only writes those two, ``get``, ``__len__`` and ``close``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import blake2b
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field

from labelgate.guard.fingerprint.winnow import (
    DEFAULT_PARAMS,
    Fingerprints,
    WinnowParams,
    fingerprint,
    kgram_hashes,
    normalise,
    sorted_unique,
    word_kgrams,
)
from labelgate.guard.items import ItemKind, LabelOrigin, LabelReason
from labelgate.guard.labels import Label, LabelKey, label_key

DEFAULT_THRESHOLD = 0.2  # a quarter-copy of a stored text scores about 0.25 (measured)
DEFAULT_MIN_MATCHES = 3  # shared fingerprints needed (fewer when the stored text has fewer)
DEFAULT_MAX_DF = 1000  # fingerprints in more stored texts than this are boilerplate
DEFAULT_RUN_WORDS = 8  # a copied run this long re-identifies a stored text, whatever its share
DEFAULT_RUN_MAX_DF = 4  # ... unless its k-grams are in more stored texts (a common phrase)
# Agents resend their whole conversation every turn, and an answer remembered now is looked up
# as an input next turn: the same texts are fingerprinted again and again. Winnowing is pure,
# so its result is cached (read-only arrays), for texts short enough to keep many of.
_CACHED_TEXT_CHARS = 32_768


@lru_cache(maxsize=2048)
def _cached_fingerprint(text: str, params: WinnowParams) -> Fingerprints:
    fps = fingerprint(text, params)
    fps.flags.writeable = False  # shared between callers: nobody may change it in place
    return fps


def text_fingerprints(text: str, params: WinnowParams) -> Fingerprints:
    """``fingerprint(text, params)``, cached for texts up to a size (read-only result)."""
    if len(text) > _CACHED_TEXT_CHARS:
        return fingerprint(text, params)
    return _cached_fingerprint(text, params)


@lru_cache(maxsize=1024)
def _cached_fingerprint_set(text: str, params: WinnowParams) -> frozenset[int]:
    return frozenset(text_fingerprints(text, params).tolist())


def text_fingerprint_set(text: str, params: WinnowParams) -> frozenset[int]:
    """``text_fingerprints`` as a set, for overlap tests (``isdisjoint``: a fraction of a
    microsecond; ``np.intersect1d``: about 10 us), cached like it."""
    if len(text) > _CACHED_TEXT_CHARS:
        return frozenset(fingerprint(text, params).tolist())
    return _cached_fingerprint_set(text, params)


@lru_cache(maxsize=1024)
def _cached_word_kgrams(text: str, k: int, version: int) -> frozenset[tuple[str, ...]]:
    return frozenset(word_kgrams(normalise(text, version), k))


def text_word_kgrams(text: str, params: WinnowParams) -> frozenset[tuple[str, ...]]:
    """``word_kgrams`` of the text's words, cached like ``text_fingerprints``: the test of
    whether two texts could share a fingerprint (see ``Guard.could_reidentify``)."""
    if len(text) > _CACHED_TEXT_CHARS:
        return frozenset(word_kgrams(normalise(text, params.version), params.k))
    return _cached_word_kgrams(text, params.k, params.version)


@dataclass(frozen=True, slots=True)
class Query:
    """A text to look up: the hash of every k-gram in text order (``kgrams``, where a copied
    run shows as neighbouring hashes) and their sorted unique set (``fingerprints``).

    A lookup compares every k-gram of the new text, not only its winnowed ones, with the
    stored texts' winnowed fingerprints: a stored fingerprint inside a copied part is then
    always found, not only when the new text's own windows happen to pick it.
    """

    kgrams: Fingerprints
    fingerprints: Fingerprints


def _query(text: str, params: WinnowParams, also: tuple[int, ...]) -> Query:
    kgrams = kgram_hashes(normalise(text, params.version), params.k)
    every = kgrams
    for version in also:  # older schemes the store still holds texts of
        old = kgram_hashes(normalise(text, version), params.k)
        every = np.concatenate([every, old])
    fps = sorted_unique(every).view(np.int64)
    fps.flags.writeable = False
    positions = kgrams.view(np.int64)
    positions.flags.writeable = False
    return Query(positions, fps)


@lru_cache(maxsize=2048)
def _cached_query(text: str, params: WinnowParams, also: tuple[int, ...]) -> Query:
    return _query(text, params, also)


def text_query(text: str, params: WinnowParams, also: tuple[int, ...] = ()) -> Query:
    """``text`` as a :class:`Query` (cached like ``text_fingerprints``); ``also``: older
    schemes whose k-grams of the text are looked up too (their words may differ)."""
    if len(text) > _CACHED_TEXT_CHARS:
        return _query(text, params, also)
    return _cached_query(text, params, also)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TextMeta(BaseModel):
    """What a person needs to understand a match: what the text was, where from, when."""

    model_config = {"frozen": True, "extra": "forbid"}

    kind: ItemKind = ItemKind.DOCUMENT
    source: str | None = Field(default=None, description="tool, retrieval source, agent...")
    created: str = Field(default_factory=_now, description="ISO 8601, UTC")


class LookupOptions(BaseModel):
    """How strict a lookup is."""

    model_config = {"frozen": True, "extra": "forbid"}

    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="least share of a stored text's fingerprints found in the new text",
    )
    min_matches: int = Field(default=DEFAULT_MIN_MATCHES, ge=1)
    max_df: int = Field(default=DEFAULT_MAX_DF, ge=1)
    limit: int | None = Field(default=None, ge=1, description="at most this many matches")
    run_words: int | None = Field(
        default=DEFAULT_RUN_WORDS,
        ge=1,
        description="a run of at least this many words copied from a stored text finds it "
        "whatever its share (None: only ``threshold``); needs two shared fingerprints",
    )
    run_max_df: int = Field(
        default=DEFAULT_RUN_MAX_DF,
        ge=1,
        description="a run counts only if its fingerprints are in at most this many stored "
        "texts: a phrase many texts share is no evidence of copying one of them",
    )
    one_per_label: bool = Field(
        default=False,
        description="only the best match of each label, with how many more it stands for "
        "(``Match.also``): what labeling needs, when a phrase is shared by many stored texts",
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One labeled text to store, as fingerprints."""

    text_id: str
    fingerprints: Fingerprints
    label: Label
    meta: TextMeta = field(default_factory=TextMeta)

    def __post_init__(self) -> None:
        fps = self.fingerprints
        ordered = isinstance(fps, np.ndarray) and fps.dtype == np.int64 and fps.ndim == 1
        if not (ordered and bool(np.all(fps[1:] > fps[:-1]))):
            # containment counts each fingerprint once: insist on sorted unique int64
            object.__setattr__(self, "fingerprints", as_fingerprints(fps))


@dataclass(frozen=True, slots=True)
class Match:
    """A stored text found in a new text.

    ``containment``: share of the STORED text's fingerprints present in the new text (1.0: the
    new text contains all of it). ``coverage``: share of the NEW text's fingerprints that come
    from the stored text (1.0: the new text is nothing but (part of) it).
    """

    text_id: str
    label: Label
    containment: float
    coverage: float
    matched: int
    meta: TextMeta
    also: int = 0  # more stored texts with the same label found (``one_per_label``)
    run: int = 0  # words of the longest copied run found, when it was found by a run

    def provenance(self) -> LabelReason:
        """The reason this match gives a label, as a person reads it in an audit trace."""
        source = f" from {self.meta.source}" if self.meta.source else ""
        more = f"; and {self.also} more stored texts with this label" if self.also else ""
        share = f"{self.containment:.0%}"
        if self.run:
            share = f"a run of {self.run} words ({share})"
        detail = (
            f"contains {share} of a {self.meta.kind.value}{source} "
            f"seen {self.meta.created} ({self.matched} shared fingerprints{more})"
        )
        return LabelReason(LabelOrigin.FINGERPRINT, detail, ref=self.text_id)


# Every answer's text id needs its label's JSON, and a proxy sees few distinct labels.
_LABEL_JSON: dict[LabelKey, str] = {}
_LABEL_JSON_SIZE = 4096


def label_json(label: Label) -> str:
    key = label_key(label)
    text = _LABEL_JSON.get(key)
    if text is None:
        text = json.dumps(label.to_dict(), sort_keys=True, separators=(",", ":"))
        if len(_LABEL_JSON) >= _LABEL_JSON_SIZE:
            _LABEL_JSON.clear()
        _LABEL_JSON[key] = text
    return text


def content_id(fingerprints: Fingerprints, label: Label) -> str:
    """A text id from the content and label: the same text with the same label is kept once."""
    digest = blake2b(np.ascontiguousarray(fingerprints, dtype=np.int64).tobytes(), digest_size=12)
    digest.update(label_json(label).encode())
    return "fp-" + digest.hexdigest()


def borrowed_kgrams(texts: Sequence[str], params: WinnowParams) -> Fingerprints:
    """Every k-gram hash of ``texts`` (not only the winnowed ones), sorted unique."""
    parts = [
        kgram_hashes(normalise(t, params.version), params.k).view(np.int64)
        for t in texts
        if t.strip()
    ]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def text_entry(
    text: str,
    label: Label,
    params: WinnowParams,
    *,
    text_id: str | None = None,
    meta: TextMeta | None = None,
    borrowed: Sequence[str] = (),
) -> Entry:
    """``text`` as an entry to store (its id by default derived from content and label).

    ``borrowed``: texts whose words ``text`` may quote without owning them (an answer's own
    prompt, in the client's words): their k-grams are left out, so that a later text quoting
    the prompt is not taken for a copy of the answer and given its label."""
    fps = text_fingerprints(text, params)
    if borrowed:
        fps = fps[~np.isin(fps, borrowed_kgrams(borrowed, params))]
    return Entry(text_id or content_id(fps, label), fps, label, meta or TextMeta())


def as_fingerprints(values: Sequence[int] | Fingerprints) -> Fingerprints:
    """Sorted unique int64, whatever the caller passed."""
    return np.unique(np.asarray(values, dtype=np.int64))


@runtime_checkable
class FingerprintStore(Protocol):
    """What the proxy and the propagators rely on. See :class:`StoreBase` for the semantics."""

    params: WinnowParams
    path: str  # where it is, as an operator reads it (a file, or a URL without its password)

    def add(
        self,
        text_id: str,
        fingerprints: Fingerprints,
        label: Label,
        meta: TextMeta | None = None,
    ) -> bool: ...

    def add_many(self, entries: Iterable[Entry]) -> int: ...

    def add_text(
        self,
        text: str,
        label: Label,
        *,
        text_id: str | None = None,
        meta: TextMeta | None = None,
    ) -> str: ...

    def lookup(
        self,
        query: str | Fingerprints,
        threshold: float | None = None,
        options: LookupOptions | None = None,
    ) -> list[Match]: ...

    def get(self, text_id: str) -> tuple[Label, TextMeta, int] | None: ...

    def unreadable_labels(self) -> list[str]: ...

    def refresh(self) -> int: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class StoreBase(ABC):
    """Conveniences shared by every backend.

    Text ids are immutable: adding an id that is already stored is ignored (``add`` returns
    False), so a writer may retry a batch safely.
    """

    params: WinnowParams = DEFAULT_PARAMS

    @abstractmethod
    def add_many(self, entries: Iterable[Entry]) -> int:
        """Store the entries in one transaction; return how many were new."""

    @abstractmethod
    def lookup_fingerprints(
        self, fingerprints: Fingerprints, options: LookupOptions
    ) -> list[Match]:
        """The stored texts whose containment in ``fingerprints`` passes ``options``."""

    @abstractmethod
    def get(self, text_id: str) -> tuple[Label, TextMeta, int] | None:
        """(label, meta, number of fingerprints) of a stored text, or None."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def refresh(self) -> int:
        """Load what other processes stored since this one last looked; return how many texts.
        A store that always reads the database has nothing to load."""
        return 0

    def add(
        self,
        text_id: str,
        fingerprints: Fingerprints,
        label: Label,
        meta: TextMeta | None = None,
    ) -> bool:
        entry = Entry(text_id, as_fingerprints(fingerprints), label, meta or TextMeta())
        return self.add_many([entry]) == 1

    def add_text(
        self,
        text: str,
        label: Label,
        *,
        text_id: str | None = None,
        meta: TextMeta | None = None,
    ) -> str:
        """Fingerprint and store ``text``; return its id (by default derived from content+label)."""
        entry = text_entry(text, label, self.params, text_id=text_id, meta=meta)
        self.add_many([entry])
        return entry.text_id

    def lookup(
        self,
        query: str | Fingerprints,
        threshold: float | None = None,
        options: LookupOptions | None = None,
    ) -> list[Match]:
        """Stored texts contained in ``query`` (best first); ``threshold`` overrides options."""
        options = options or LookupOptions()
        if threshold is not None:
            options = LookupOptions.model_validate({**options.model_dump(), "threshold": threshold})
        if isinstance(query, str):
            return self.lookup_query(text_query(query, self.params, self.also_schemes), options)
        return self.lookup_fingerprints(as_fingerprints(query), options)

    @property
    def also_schemes(self) -> tuple[int, ...]:
        """Older fingerprint schemes some stored texts were written with (looked up too)."""
        return ()

    def lookup_query(self, query: Query, options: LookupOptions) -> list[Match]:
        """A text's lookup. This default compares all its k-grams by share (``threshold``);
        a backend that can tell where each shared one is in the text also finds copied runs
        (``options.run_words``), as ``SQLiteFingerprintStore`` does with its memory index."""
        return self.lookup_fingerprints(query.fingerprints, options)

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
