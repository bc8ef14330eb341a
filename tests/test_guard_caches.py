"""The guard's per-request caches: same answers as without them, and never stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelgate.guard.engine import Guard, InputSpec
from labelgate.guard.fingerprint import SQLiteFingerprintStore
from labelgate.guard.fingerprint.store import text_fingerprints
from labelgate.guard.fingerprint.winnow import DEFAULT_PARAMS, fingerprint
from labelgate.guard.policy import SourceContext, load_policy

ROOT = Path(__file__).resolve().parents[1]
SECRET_TEXT = (
    "Payroll summary for March. Alice Martin, senior engineer, base salary 9,400 euros per "
    "month plus a retention bonus of 15,000 euros paid in two parts, confidential."
)


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    store = SQLiteFingerprintStore(tmp_path / "fp.db", policy.lattice)
    yield Guard(policy, fingerprints=store)  # type: ignore[misc]
    store.close()


def test_cached_fingerprints_are_equal_and_read_only() -> None:
    first = text_fingerprints(SECRET_TEXT, DEFAULT_PARAMS)
    assert np.array_equal(first, fingerprint(SECRET_TEXT, DEFAULT_PARAMS))
    assert text_fingerprints(SECRET_TEXT, DEFAULT_PARAMS) is first
    with pytest.raises(ValueError):
        first[0] = 0  # shared between callers: nobody may change it


def test_label_source_is_cached_per_context_and_returns_copies(guard: Guard) -> None:
    policy = guard.policy
    ctx = SourceContext(kind="document", url="https://evil.example/x", agent="a")
    first = policy.label_source(ctx)
    first.provenance.append(first.provenance[0])  # a caller extending its copy
    again = policy.label_source(ctx)
    assert again.label == first.label
    assert len(again.provenance) == len(first.provenance) - 1
    other = policy.label_source(SourceContext(kind="document", url="https://wiki.corp/x"))
    fresh = load_policy(ROOT / "policies" / "default.yaml")
    for c in (ctx, SourceContext(kind="document", url="https://wiki.corp/x")):
        assert policy.label_source(c).label == fresh.label_source(c).label
    assert (
        other.label
        == fresh.label_source(SourceContext(kind="document", url="https://wiki.corp/x")).label
    )


def test_lookup_cache_sees_texts_stored_after_it(guard: Guard) -> None:
    store = guard.fingerprints
    assert isinstance(store, SQLiteFingerprintStore)
    query = f"Please summarise this: {SECRET_TEXT}"
    assert store.lookup(query) == []
    assert store.lookup(query) == []  # answered from the cache
    label = guard.lattice.label("confidential", "trusted", sources=["doc:payroll"])
    text_id = store.add_text(SECRET_TEXT, label)
    (match,) = store.lookup(query)  # the new row voids the cached (empty) answer
    assert (match.text_id, match.label) == (text_id, label)
    assert store.lookup(query) == [match]
    item = guard.label_input(InputSpec(text=query))
    assert label.flows_to(item.label)


def test_remembering_a_stored_text_is_skipped_but_new_labels_are_not(guard: Guard) -> None:
    store = guard.fingerprints
    assert store is not None
    label = guard.lattice.label("confidential", "trusted", sources=["doc:payroll"])
    assert guard.worth_remembering(SECRET_TEXT, label)
    stored = guard.remember(SECRET_TEXT, label)
    assert stored is not None and len(store) == 1
    assert guard.remember(SECRET_TEXT, label) == stored  # same text, same label: its id
    assert guard.remember_many([(SECRET_TEXT, label, None)]) == 0 and len(store) == 1
    higher = guard.lattice.label("secret", "trusted", sources=["doc:payroll"])
    assert guard.remember_many([(SECRET_TEXT, higher, None)]) == 1  # another label: stored
    assert not guard.worth_remembering("   ", label)
    assert not guard.worth_remembering(SECRET_TEXT, guard.lattice.bottom)


def test_known_keys_do_not_survive_another_store(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    label = policy.lattice.label("confidential", "trusted")
    with SQLiteFingerprintStore(tmp_path / "a.db", policy.lattice) as a:
        text_id = a.add_text(SECRET_TEXT, label)
        assert a.add_text(SECRET_TEXT, label) == text_id and len(a) == 1
    with SQLiteFingerprintStore(tmp_path / "b.db", policy.lattice) as b:
        assert b.add_text(SECRET_TEXT, label) == text_id  # a's memory is not b's: written
        assert len(b) == 1


def test_a_phrase_shared_by_many_stored_texts_gives_one_reason_per_label(guard: Guard) -> None:
    """Hundreds of stored answers sharing a preamble must not make hundreds of provenance
    entries (and audit rows) for every text that uses it: one per label, with a count."""
    store = guard.fingerprints
    assert store is not None
    label = guard.lattice.label("confidential", "trusted", sources=["agent:writer"])
    preamble = (
        "As the operations assistant for the finance team I have now read every document you "
        "shared with me this morning and here is what I found, in order of importance:"
    )
    for i in range(30):
        store.add_text(f"{preamble} the summary number {i} of the quarterly figures", label)
    query = f"{preamble} something new entirely, unrelated"
    found = len(store.lookup(query))  # every match, as the store's default gives them
    assert found > 3
    item = guard.label_input(InputSpec(text=query))
    (why,) = [p for p in item.provenance if p.origin == "fingerprint"]
    assert f"and {found - 1} more stored texts with this label" in why.detail
    assert label.flows_to(item.label)
