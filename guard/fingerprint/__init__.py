"""Content fingerprints: re-identify labeled text when it shows up again.

Every labeled text labelgate sees (an ingested document, a labeled output) is reduced to
winnowed hashes of its normalised word k-grams and stored with its label. A new text is looked
up to find which stored texts it contains, wholly or partly, so it can inherit their labels
without any client cooperation. Only hashes are stored, never the text.

    store = SQLiteFingerprintStore("fingerprints.db", lattice)
    store.add_text(document, label, meta=TextMeta(source="rag:wiki"))
    for match in store.lookup(prompt_part):
        label = label | match.label
"""

from labelgate.guard.fingerprint.sqlite_store import SQLiteFingerprintStore
from labelgate.guard.fingerprint.store import (
    DEFAULT_MAX_DF,
    DEFAULT_MIN_MATCHES,
    DEFAULT_THRESHOLD,
    Entry,
    FingerprintStore,
    LookupOptions,
    Match,
    StoreBase,
    TextMeta,
    content_id,
)
from labelgate.guard.fingerprint.winnow import (
    DEFAULT_PARAMS,
    Fingerprints,
    WinnowParams,
    fingerprint,
    normalise,
)

__all__ = [
    "DEFAULT_MAX_DF",
    "DEFAULT_MIN_MATCHES",
    "DEFAULT_PARAMS",
    "DEFAULT_THRESHOLD",
    "Entry",
    "FingerprintStore",
    "Fingerprints",
    "LookupOptions",
    "Match",
    "SQLiteFingerprintStore",
    "StoreBase",
    "TextMeta",
    "WinnowParams",
    "content_id",
    "fingerprint",
    "normalise",
]
