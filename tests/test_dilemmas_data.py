"""Dilemma loaders: the DailyDilemmas formats (from small fixtures written here, and from
../shared when present) and the shipped starter set."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from labelgate.evals.dilemmas.data import (
    THEORIES,
    DataError,
    all_values,
    load_action_table,
    load_dilemmas,
    load_principles,
    load_situations,
    load_starter,
    load_values,
    parse_list,
    situation_question,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dailydilemmas"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")

ACTION_HEADER = [
    "idx",
    "dilemma_situation",
    "action_type",
    "action",
    "negative_consequence",
    "values_names",
    "wvs",
    "mft",
    "virtue",
    "emotion",
    "maslow",
    "topic_group",
]


def write_action_table(path: Path) -> Path:
    rows = [
        [
            "7",
            "Should you lend your bike?",
            "to_do",
            "Lend the bike",
            "It breaks.",
            "['kindness', 'trust']",
            "['Self-expression', nan]",
            "['Care', 'Loyalty']",
            "[nan, nan]",
            "['love', 'trust']",
            "[nan, 'safety']",
            "daily",
        ],
        [
            "7",
            "Should you lend your bike?",
            "not_to_do",
            "Keep the bike",
            "They sulk.",
            "['caution']",
            "['Survival']",
            "[nan]",
            "[nan]",
            "[nan]",
            "['safety']",
            "daily",
        ],
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(ACTION_HEADER)
        writer.writerows(rows)
    return path


def test_parse_list_reads_pandas_literals_without_eval() -> None:
    assert parse_list("['a', nan, \"b's\"]") == ["a", None, "b's"]
    assert parse_list("[]") == [] and parse_list("") == []
    with pytest.raises(DataError):
        parse_list("__import__('os').system('true')")
    with pytest.raises(DataError):
        parse_list("[1 + 1]")


def test_action_table_pairs_rows_and_keeps_each_values_theories(tmp_path: Path) -> None:
    [d] = load_action_table(write_action_table(tmp_path / "t.csv"))
    assert d.id == "dd7" and d.situation == "Should you lend your bike?"
    assert d.to_do.text == "Lend the bike" and d.to_do.values == ["kindness", "trust"]
    assert d.not_to_do.values == ["caution"] and d.not_to_do.consequence == "They sulk."
    assert d.theories["kindness"] == {"WVS": "Self-expression", "MFT": "Care", "Emotion": "love"}
    assert d.theories["trust"] == {"MFT": "Loyalty", "Emotion": "trust", "Maslow": "safety"}
    assert d.theories["caution"] == {"WVS": "Survival", "Maslow": "safety"}


def test_action_table_errors_are_readable(tmp_path: Path) -> None:
    path = write_action_table(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    (tmp_path / "half.csv").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DataError, match="lacks one of"):
        load_action_table(tmp_path / "half.csv")
    (tmp_path / "bad.csv").write_text("idx,action\n1,x\n")
    with pytest.raises(DataError, match="missing columns"):
        load_action_table(tmp_path / "bad.csv")


def test_values_table_fills_rows_without_mapping(tmp_path: Path) -> None:
    (tmp_path / "values.csv").write_text(
        ",value,WVS,MFT,Virtue,Emotion,Maslow\n0,Caution,Survival,Care,,fear,safety\n"
    )
    values = load_values(tmp_path / "values.csv")
    assert values == {
        "caution": {"WVS": "Survival", "MFT": "Care", "Emotion": "fear", "Maslow": "safety"}
    }
    table = write_action_table(tmp_path / "dilemmas_with_detail_by_action_x.csv")
    lines = table.read_text().splitlines()
    lines[2] = "7,Should you lend your bike?,not_to_do,Keep the bike,x,\"['caution']\",,,,,,daily"
    table.write_text("\n".join(lines) + "\n")
    [d] = load_dilemmas(tmp_path)
    assert d.theories["caution"]["MFT"] == "Care"  # from values.csv: the row had no mapping


def test_situations_derive_actions_from_the_question(tmp_path: Path) -> None:
    path = tmp_path / "dilemma.csv"
    path.write_text(
        ",idx,basic_situation,dilemma_situation\n"
        '0,3,x,"You are tired. A friend needs help moving. Should you help your friend?"\n'
    )
    [d] = load_situations(path)
    assert d.id == "dd3" and not d.has_values
    assert "Should you help your friend?" in d.to_do.text and d.to_do.text.startswith("Yes")
    assert d.not_to_do.text.startswith("No")
    assert situation_question("No question here.") == "No question here."
    assert load_dilemmas(tmp_path)[0].source == "dailydilemmas-situations"


def test_starter_set_is_complete_and_mapped() -> None:
    dilemmas = load_starter()
    assert len(dilemmas) >= 30
    assert len({d.id for d in dilemmas}) == len(dilemmas)
    values = load_values(Path(__file__).resolve().parents[1] / "evals/data/values_starter.csv")
    for d in dilemmas:
        assert d.to_do.values and d.not_to_do.values, d.id
        assert d.situation.rstrip().endswith("?"), d.id
        for v in d.to_do.values + d.not_to_do.values:
            assert v in values, (d.id, v)
    used = all_values(dilemmas)
    # Every theory is represented, so the five-theory profile has something to show.
    for theory in THEORIES:
        assert any(theory in values[v] for v in used), theory


def test_principles_starter_and_csv(tmp_path: Path) -> None:
    starter = load_principles()
    assert len(starter) >= 2 and all(p.values for p in starter)
    known = all_values(load_starter())
    assert all(set(p.values) & known for p in starter)
    path = tmp_path / "p.csv"
    path.write_text('principle,source\n"Be kind.",x\n"",y\nBe brave.,z\n')
    assert [(p.id, p.text) for p in load_principles(path)] == [
        ("p1", "Be kind."),
        ("p3", "Be brave."),
    ]


def test_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        load_dilemmas(tmp_path / "nope")
    with pytest.raises(DataError):
        load_dilemmas(tmp_path)  # empty folder: no dilemma file


@pytest.mark.shared
@needs_shared
def test_shared_dailydilemmas_formats() -> None:
    actions = load_dilemmas(SHARED)
    assert len(actions) >= 2 and all(d.has_values for d in actions)
    assert all(d.source == "dailydilemmas-actions" for d in actions)
    situations = load_dilemmas(SHARED, "situations")
    assert len(situations) == 1360 and not any(d.has_values for d in situations)
    values = load_values(SHARED / "values.csv")
    assert len(values) > 250 and values["honesty"]["MFT"] == "Fairness"
    assert len(load_principles(SHARED / "principle_claude.csv")) > 50
