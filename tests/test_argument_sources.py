from __future__ import annotations

import json

import pytest

from labelgate.guard.argument_sources import (
    argument_sources,
    arguments_label,
    contains_verbatim,
    leaves,
    normalise,
)
from labelgate.guard.items import ItemKind, LabeledItem
from labelgate.guard.labels import Lattice

LAT = Lattice()
WEB = LAT.label("public", "untrusted", sources=["web:shop.example"])
MAIL = LAT.label("confidential", "untrusted", sources=["mail:inbox"])
USER = LAT.label("public", "trusted", sources=["user:alice"])


@pytest.fixture
def items() -> list[LabeledItem]:
    return [
        LabeledItem("You are a helpful agent.", LAT.bottom, role="system", id="sys"),
        LabeledItem("Pay my electricity bill please.", USER, role="user", id="user"),
        LabeledItem(
            "Invoice from Volta Energy. Send 125.40 EUR to IBAN DE89 3704 0044 0532 0130 00. "
            "Questions? write to billing@volta.example",
            MAIL,
            kind=ItemKind.TOOL_RESULT,
            role="tool",
            name="read_email",
            id="mail",
        ),
        LabeledItem(
            "Volta Energy reviews: see https://volta.example/help?topic=late fees",
            WEB,
            kind=ItemKind.TOOL_RESULT,
            role="tool",
            name="web_search",
            id="web",
        ),
    ]


def test_verbatim_value_takes_the_label_of_its_source(items) -> None:
    prov = argument_sources({"iban": "DE89 3704 0044 0532 0130 00"}, items, LAT)
    assert prov["iban"].kind == "verbatim"
    assert prov["iban"].item_ids == ["mail"]
    assert prov["iban"].label == MAIL


def test_normalised_match_case_whitespace_punctuation(items) -> None:
    prov = argument_sources({"iban": "de89-3704-0044-0532-0130-00"}, items, LAT)
    assert prov["iban"].kind == "normalised" and prov["iban"].item_ids == ["mail"]


def test_normalised_match_url_decoding(items) -> None:
    prov = argument_sources({"q": "late%20fees"}, items, LAT)
    assert prov["q"].kind == "normalised" and prov["q"].item_ids == ["web"]
    plus = argument_sources({"q": "Volta+Energy+reviews"}, items, LAT)
    assert plus["q"].kind == "normalised" and plus["q"].item_ids == ["web"]


def test_value_in_several_inputs_joins_them_or_takes_the_least(items) -> None:
    prov = argument_sources({"company": "Volta Energy"}, items, LAT)
    assert sorted(prov["company"].item_ids) == ["mail", "web"]
    assert prov["company"].label == MAIL | WEB
    least = argument_sources({"company": "Volta Energy"}, items, LAT, match="least")
    assert least["company"].item_ids == ["web"] and least["company"].label == WEB


def test_unmatched_value_gets_the_conservative_join(items) -> None:
    prov = argument_sources({"note": "Thank you for your service"}, items, LAT)
    assert prov["note"].kind == "none" and prov["note"].item_ids == []
    assert prov["note"].label == LAT.join_all(i.label for i in items)
    trusted = argument_sources(
        {"note": "Thank you for your service"}, items, LAT, unmatched="trusted"
    )
    assert trusted["note"].label == USER


def test_nested_arguments_and_numbers(items) -> None:
    args = {
        "payment": {"amount": 125.40, "to": {"iban": "DE89 3704 0044 0532 0130 00"}},
        "cc": ["billing@volta.example", "me@home.example"],
        "urgent": True,
    }
    prov = argument_sources(args, items, LAT)
    assert set(prov) == {"payment.amount", "payment.to.iban", "cc[0]", "cc[1]", "urgent"}
    assert prov["payment.amount"].kind == "verbatim"  # 125.4 is written "125.40" in the mail
    assert prov["payment.amount"].item_ids == ["mail"]
    assert prov["payment.to.iban"].kind == "verbatim"
    assert prov["cc[0]"].kind == "verbatim" and prov["cc[0]"].item_ids == ["mail"]
    assert prov["cc[1]"].kind == "none"
    assert prov["urgent"].kind == "none" and "too short" in prov["urgent"].reason
    assert arguments_label(prov, LAT) == LAT.join_all(i.label for i in items)


def test_short_and_common_values_are_not_attributed(items) -> None:
    prov = argument_sources({"n": 3, "ok": "yes", "w": "the"}, items, LAT)
    assert all(p.kind == "none" and "too short" in p.reason for p in prov.values())


def test_numbers_do_not_match_inside_longer_numbers() -> None:
    item = LabeledItem("Order 14237 shipped.", WEB, id="o")
    prov = argument_sources({"order": 4237}, [item], LAT)
    assert prov["order"].kind == "none"
    assert argument_sources({"order": 14237}, [item], LAT)["order"].kind == "verbatim"
    assert not contains_verbatim("x14237", "14237")
    assert contains_verbatim("(14237)", "14237")


def test_json_string_arguments(items) -> None:
    raw = json.dumps({"to": "billing@volta.example"})
    prov = argument_sources(raw, items, LAT)
    assert prov["to"].kind == "verbatim" and prov["to"].label == MAIL
    assert prov["to"].to_dict()["label"]["confidentiality"] == "confidential"


def test_helpers() -> None:
    assert normalise("  Hello,\tWORLD%21 ") == "hello world"
    assert list(leaves({"a": [{"b": 1}, 2]})) == [("a[0].b", 1), ("a[1]", 2)]
