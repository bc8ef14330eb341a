"""The label lattice: algebraic laws (property-based) and the behaviour policies rely on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelgate.guard.labels import Label, LabelSpec, Lattice, LatticeConfig

LATTICE = Lattice(LatticeConfig(categories=["pii", "finance", "health"]))
PRINCIPALS = ["alice", "bob", "carol", "hr"]
SOURCES = ["web:a", "web:b", "tool:search", "doc:wiki", "agent:x"]


@st.composite
def labels(draw: st.DrawFn) -> Label:
    readers = draw(st.none() | st.frozensets(st.sampled_from(PRINCIPALS)))
    return LATTICE.label(
        confidentiality=draw(st.sampled_from(LATTICE.config.confidentiality)),
        integrity=draw(st.sampled_from(LATTICE.config.integrity)),
        readers=readers,
        categories=draw(st.frozensets(st.sampled_from(LATTICE.config.categories))),
        sources=draw(st.frozensets(st.sampled_from(SOURCES))),
    )


@given(labels(), labels(), labels())
def test_join_and_meet_are_associative(a: Label, b: Label, c: Label) -> None:
    assert (a | b) | c == a | (b | c)
    assert (a & b) & c == a & (b & c)


@given(labels(), labels())
def test_join_and_meet_are_commutative(a: Label, b: Label) -> None:
    assert a | b == b | a
    assert a & b == b & a


@given(labels())
def test_join_and_meet_are_idempotent(a: Label) -> None:
    assert a | a == a
    assert a & a == a


@given(labels(), labels())
def test_absorption(a: Label, b: Label) -> None:
    assert a | (a & b) == a
    assert a & (a | b) == a


@given(labels())
def test_flows_to_is_reflexive(a: Label) -> None:
    assert a <= a


@given(labels(), labels())
def test_flows_to_is_antisymmetric(a: Label, b: Label) -> None:
    if a <= b and b <= a:
        assert a == b


@given(labels(), labels(), labels())
def test_flows_to_is_transitive(a: Label, b: Label, c: Label) -> None:
    if a <= b and b <= c:
        assert a <= c


@given(labels(), labels())
def test_flows_to_agrees_with_join_and_meet(a: Label, b: Label) -> None:
    assert (a <= b) == (a | b == b)
    assert (a <= b) == (a & b == a)


@given(labels(), labels(), labels())
def test_join_is_the_least_upper_bound(a: Label, b: Label, c: Label) -> None:
    assert a <= a | b and b <= a | b
    if a <= c and b <= c:
        assert a | b <= c


@given(labels())
def test_bottom_is_the_identity_of_join(a: Label) -> None:
    assert LATTICE.bottom | a == a
    assert LATTICE.bottom <= a


def test_join_takes_the_least_trusted_and_most_confidential() -> None:
    web = LATTICE.label("public", "untrusted", sources=["web:a"])
    hr = LATTICE.label("confidential", "trusted", readers=["hr", "alice"], categories=["pii"])
    joined = web | hr
    assert joined.confidentiality.name == "confidential"
    assert joined.integrity.name == "untrusted"
    assert joined.readers == frozenset({"hr", "alice"})
    assert joined.sources == frozenset({"web:a"})
    assert not joined <= hr and not joined <= web


def test_readers_narrow_by_intersection() -> None:
    a = LATTICE.label(readers=["alice", "bob"])
    b = LATTICE.label(readers=["bob", "carol"])
    assert (a | b).readers == frozenset({"bob"})
    assert (a & b).readers == frozenset({"alice", "bob", "carol"})
    assert LATTICE.label() <= a  # everyone may read -> a restricted set is more confidential


def test_unknown_level_and_category_are_rejected_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown confidentiality level 'top'.*public"):
        LATTICE.label(confidentiality="top")
    with pytest.raises(ValueError, match="unknown categories"):
        LATTICE.label(categories=["nuclear"])


def test_spec_round_trip() -> None:
    label = LATTICE.label("internal", "untrusted", ["bob"], ["pii"], ["web:a"])
    assert LATTICE.parse(label.to_dict()) == label
    assert LATTICE.parse(LabelSpec(confidentiality="internal")).confidentiality.name == "internal"


def test_duplicate_levels_are_invalid() -> None:
    with pytest.raises(ValueError, match="unique"):
        LatticeConfig(confidentiality=["public", "public"])


def test_short_form_is_readable() -> None:
    label = LATTICE.label("secret", "untrusted", sources=["web:a"])
    assert label.short() == "secret/untrusted src=web:a"


def test_labels_and_items_survive_pickling_with_their_level_names() -> None:
    """They travel to the audit process with every request (compact ``__reduce__``)."""
    import pickle

    from labelgate.guard.items import ItemKind, LabeledItem, LabelOrigin, LabelReason

    lattice = Lattice(LatticeConfig(confidentiality=["open", "closed"], integrity=["low", "high"]))
    label = lattice.label("closed", "low", readers=["a"], categories=["pii"], sources=["web:x"])
    why = LabelReason(LabelOrigin.FINGERPRINT, "seen before", rule="r", ref="item-1")
    item = LabeledItem("text", label, ItemKind.TOOL_RESULT, role="tool", name="t", provenance=[why])
    back = pickle.loads(pickle.dumps(item))
    assert back == item and back.label.to_dict() == label.to_dict()
    assert (back.label.confidentiality.name, back.label.integrity.name) == ("closed", "low")
    assert pickle.loads(pickle.dumps(lattice.label("open", "high"))).readers is None
