from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

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
TOP = LAT.label("secret", "untrusted", sources=["unmatched"])


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


def test_value_in_several_inputs_takes_the_best_copy_or_joins_them(items) -> None:
    # Both copies are untrusted; the public one is the least confidential: its label.
    prov = argument_sources({"company": "Volta Energy"}, items, LAT)
    assert prov["company"].item_ids == ["web"] and prov["company"].label == WEB
    assert "also in read_email (mail)" in prov["company"].reason
    every = argument_sources({"company": "Volta Energy"}, items, LAT, match="all")
    assert sorted(every["company"].item_ids) == ["mail", "web"]
    assert every["company"].label == MAIL | WEB
    least = argument_sources({"company": "Volta Energy"}, items, LAT, match="least")
    assert least["company"].item_ids == ["web"] and least["company"].label == WEB


def test_a_value_the_user_typed_is_trusted_even_if_a_tool_result_holds_it(items) -> None:
    items[1].text = "Pay my electricity bill to DE89 3704 0044 0532 0130 00 please."
    prov = argument_sources({"iban": "DE89 3704 0044 0532 0130 00"}, items, LAT)
    assert prov["iban"].item_ids == ["user"] and prov["iban"].label == USER
    # ... but a value only the untrusted mail holds keeps the mail's label.
    mail_only = argument_sources({"to": "billing@volta.example"}, items, LAT)
    assert mail_only["to"].label == MAIL


def test_best_copy_takes_each_component_from_the_best_holder() -> None:
    crm = LAT.label("confidential", "trusted", sources=["crm:sales"])
    items = [
        LabeledItem("Kestrel Foods, account KF-2231", crm, id="crm", name="crm"),
        LabeledItem("Kestrel Foods opens a plant; account KF-2231", WEB, id="web", name="web"),
    ]
    prov = argument_sources({"account": "KF-2231"}, items, LAT)["account"]
    assert prov.label.confidentiality.name == "public"  # the web page holds it: not secret
    assert prov.label.integrity.name == "trusted"  # the CRM holds it: not the attacker's
    assert sorted(prov.item_ids) == ["crm", "web"]


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
    assert prov["cc[1]"].unmatched and prov["cc[1]"].kind in ("none", "composed")
    assert prov["urgent"].kind == "none" and "no text" in prov["urgent"].reason
    assert arguments_label(prov, LAT) == LAT.join_all(i.label for i in items)


def test_short_values_are_attributed_by_exact_value(items) -> None:
    items[1].text = "Pay my electricity bill please, 100 EUR at most."
    items[3].text += " Rated 7 of 10."
    prov = argument_sources({"max": 100, "stars": "7", "n": 3, "w": "the"}, items, LAT)
    assert prov["max"].item_ids == ["user"] and prov["max"].label == USER
    assert prov["stars"].item_ids == ["web"] and prov["stars"].label == WEB
    join = LAT.join_all(i.label for i in items)
    assert prov["n"].kind == "none" and prov["n"].label == join
    assert prov["w"].kind == "none" and prov["w"].label == join


def test_numbers_do_not_match_inside_longer_numbers_but_partial_copies_count() -> None:
    item = LabeledItem("Order 14237 shipped, total 120.50.", WEB, id="o")
    prov = argument_sources({"order": 4237, "total": 120}, [item], LAT, unmatched_label=LAT.bottom)
    assert prov["order"].kind == "encoded" and prov["order"].label == WEB  # a partial copy
    assert prov["total"].kind != "verbatim"
    assert argument_sources({"order": 14237}, [item], LAT)["order"].kind == "verbatim"
    assert not contains_verbatim("x14237", "14237")
    assert not contains_verbatim("120.50", "120")
    assert contains_verbatim("(14237)", "14237")
    assert contains_verbatim("Pay 120.", "120")


def test_composed_values_join_their_parts(items) -> None:
    items[1].text = "Send invoice 4471 to ACME please."
    prov = argument_sources(
        {"subject": "Invoice 4471 for ACME, 125.40 EUR"}, items, LAT, unmatched_label=TOP
    )["subject"]
    assert prov.kind == "composed" and not prov.unmatched
    assert sorted(prov.item_ids) == ["mail", "user"]  # the amount came from the mail
    assert prov.label == USER | MAIL
    url = argument_sources(
        {"url": "https://volta.example/help?topic=late%20fees&ref=4471"},
        items,
        LAT,
        unmatched_label=TOP,
    )["url"]
    assert url.kind == "composed" and "web" in url.item_ids and "user" in url.item_ids


def test_unmatched_values_get_the_label_given_for_them(items) -> None:
    out = LAT.label("internal", "untrusted", sources=["web:shop.example"])
    prov = argument_sources({"note": "Zqx9 vbn"}, items, LAT, unmatched_label=out)["note"]
    assert prov.kind == "none" and prov.unmatched and prov.label == out
    assert "the output's label" in prov.reason


def test_re_encoded_values_are_traced(items) -> None:
    import base64

    b64 = base64.b64encode(b"DE89370400440532013000").decode()
    prov = argument_sources({"x": b64, "y": "D-E-8-9-3-7-0-4"}, items, LAT, unmatched_label=USER)
    assert "mail" in prov["x"].item_ids and prov["x"].label.integrity.name == "untrusted"
    assert "mail" in prov["y"].item_ids


def test_json_string_arguments(items) -> None:
    raw = json.dumps({"to": "billing@volta.example"})
    prov = argument_sources(raw, items, LAT)
    assert prov["to"].kind == "verbatim" and prov["to"].label == MAIL
    assert prov["to"].to_dict()["label"]["confidentiality"] == "confidential"


def test_helpers() -> None:
    assert normalise("  Hello,\tWORLD%21 ") == "hello world"
    assert list(leaves({"a": [{"b": 1}, 2]})) == [("a[0].b", 1), ("a[1]", 2)]


CASES = Path(__file__).resolve().parent / "bench" / "data" / "argument_provenance.yaml"


def _labelled_cases() -> tuple[dict[str, list[LabeledItem]], list[dict[str, Any]]]:
    data = yaml.safe_load(CASES.read_text())
    scenarios = {}
    for name, specs in data["scenarios"].items():
        items = []
        for spec in specs:
            label = LAT.bottom
            if spec.get("label"):
                levels, _, sources = spec["label"].partition(" ")
                conf, integ = levels.split("/")
                label = LAT.label(conf, integ, sources=sources.split(","))
            items.append(LabeledItem(spec["text"], label, id=spec["id"], role=spec["role"]))
        scenarios[name] = items
    return scenarios, data["cases"]


def test_labelled_cases_recall_of_tainted_arguments_is_1_and_precision_at_least_0_9() -> None:
    """tests/bench/data/argument_provenance.yaml (tests/bench/bench_argument_sources.py
    reports the same figures): a value is tainted when an input it came from is untrusted,
    or, found in no input, when the call holds an untrusted input (the output's label)."""
    scenarios, cases = _labelled_cases()
    assert len(cases) >= 60
    trusted = LAT.integ("trusted")
    tp = fp = fn = exact = 0
    for case in cases:
        items = scenarios[case["scenario"]]
        by_id = {i.id: i for i in items}
        join = LAT.join_all(i.label for i in items)
        expected = set(case["sources"])
        pool = [by_id[i] for i in expected] if expected else items
        tainted = any(i.label.integrity < trusted for i in pool)
        prov = argument_sources({"v": case["value"]}, items, LAT, unmatched_label=join)["v"]
        said = prov.label.integrity < trusted
        tp, fp, fn = (
            tp + (said and tainted),
            fp + (said and not tainted),
            fn + (tainted and not said),
        )
        exact += set(prov.item_ids) == expected
        # never less than the expected sources' labels: sound
        assert all(by_id[i].label.integrity >= prov.label.integrity for i in expected), case
    assert fn == 0 and tp / (tp + fn) == 1.0
    assert tp / (tp + fp) >= 0.9
    assert exact / len(cases) >= 0.9
