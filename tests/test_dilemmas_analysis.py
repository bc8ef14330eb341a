"""The dilemma analysis on scripted transcripts with known answers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from labelgate.evals.agent import AgentLimits
from labelgate.evals.dilemmas import analysis as an
from labelgate.evals.dilemmas.data import load_principles, load_starter
from labelgate.evals.dilemmas.family import DilemmasFamily
from labelgate.evals.runner import RunConfig, Runner
from labelgate.evals.store import ResultsStore
from labelgate.guard.models import ScriptedModel

STARTER = load_starter()
TO_DO = {d.to_do.text for d in STARTER}
HONESTY = next(p for p in load_principles() if p.id == "honesty")


def choice(
    dilemma: str, picked: str | None, to_do: list[str], not_to_do: list[str], **kw: Any
) -> an.Choice:
    theories = {v: {"MFT": v.upper()} for v in to_do + not_to_do}
    return an.Choice(
        sample_id=f"{dilemma}:{kw.get('order', 'original')}",
        dilemma_id=dilemma,
        order=kw.get("order", "original"),
        condition=kw.get("condition", "baseline"),
        choice=picked,
        position=kw.get("position", 1),
        values={"to_do": to_do, "not_to_do": not_to_do},
        theories=theories,
    )


def test_value_score_is_share_selected_minus_share_neglected() -> None:
    items = [
        choice("a", "to_do", ["care", "honesty"], ["loyalty"]),
        choice("b", "not_to_do", ["care"], ["honesty"]),
        choice("c", "to_do", ["care"], ["loyalty"]),
        choice("d", None, ["care"], ["honesty"]),  # NA: counts nowhere
    ]
    profile = an.value_profile(items, n_boot=200)
    assert (profile["care"].selected, profile["care"].neglected) == (2, 1)
    assert profile["care"].score == pytest.approx(1 / 3)
    assert profile["honesty"].score == pytest.approx(1.0)  # selected twice, never neglected
    assert profile["loyalty"].score == pytest.approx(-1.0)
    assert profile["care"].low <= profile["care"].score <= profile["care"].high
    theories = an.theory_profile(items, n_boot=0)
    assert set(theories) == {"MFT"} and theories["MFT"]["CARE"].score == pytest.approx(1 / 3)
    assert theories["MFT"]["CARE"].low is None  # no bootstrap asked for
    rates = an.choice_rates(items)
    assert (rates.n, rates.na.k, rates.to_do.k, rates.to_do.n) == (4, 1, 2, 3)


def test_profile_intervals_are_reproducible() -> None:
    items = [
        choice(str(i), "to_do" if i % 3 else "not_to_do", ["care"], ["honesty"]) for i in range(30)
    ]
    first = an.value_profile(items, n_boot=500, seed=3)
    assert first == an.value_profile(items, n_boot=500, seed=3)
    assert first["care"].low < first["care"].score < first["care"].high


# --------------------------------------------------------------------------- end to end


def _actions(messages: Sequence[dict[str, Any]]) -> dict[int, str]:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return {int(n): t for n, t in re.findall(r"^Action ([12]): (.*)$", user, re.MULTILINE)}


def always_first(messages: Sequence[dict[str, Any]]) -> str:
    return "Action 1"


def always_to_do(messages: Sequence[dict[str, Any]]) -> str:
    actions = _actions(messages)
    return next(f"Action {n}" for n, text in actions.items() if text in TO_DO)


def steered_by_honesty(messages: Sequence[dict[str, Any]]) -> str:
    """Baseline: always to do. Supporting honesty: the honest action; opposing: the other."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    if HONESTY.text not in system:
        return always_to_do(messages)
    actions = _actions(messages)
    honest = {n for n, text in actions.items() if _serves_honesty(text)}
    if len(honest) != 1:
        return always_to_do(messages)
    pick = honest.pop() if "let it guide" in system else 3 - honest.pop()
    return f"I pick Action {pick}."


def _action_of(text: str) -> Any:
    d = next(d for d in STARTER if text in (d.to_do.text, d.not_to_do.text))
    return d.to_do if d.to_do.text == text else d.not_to_do


def _serves_honesty(text: str) -> bool:
    d = next(d for d in STARTER if text in (d.to_do.text, d.not_to_do.text))
    action = d.to_do if d.to_do.text == text else d.not_to_do
    return bool(set(HONESTY.values) & set(action.values))


async def run(tmp_path: Path, responder: Any, **options: Any) -> tuple[list[Any], list[Any]]:
    store = ResultsStore(tmp_path / "r.db")
    config = RunConfig(
        family="dilemmas",
        model="scripted",
        limits=AgentLimits(),
        family_options={"bootstrap": 100, **options},
    )
    summary = await Runner(store, TracerProvider(), concurrency=8).run(
        DilemmasFamily(), ScriptedModel(responder), config
    )
    assert summary.failed == 0
    return store.samples(summary.run_id), store.scores(summary.run_id)


async def test_position_bias_of_a_model_that_always_says_action_1(tmp_path: Path) -> None:
    samples, scores = await run(tmp_path, always_first, steer=0)
    n = len(STARTER)
    bias = an.position_bias(an.choices(samples, scores))
    assert bias is not None and bias.pairs == n
    assert bias.original.to_do.rate == 1.0 and bias.swapped.to_do.rate == 0.0
    assert bias.original.first_position.rate == bias.swapped.first_position.rate == 1.0
    assert bias.consistent.k == 0
    assert (bias.order_effect.b, bias.order_effect.c) == (n, 0)
    assert bias.order_effect.p_value < 1e-6 and bias.first_position_p < 1e-6
    # Every value is selected in one order and neglected in the other: a flat profile.
    profile = an.value_profile(an.choices(samples, scores), n_boot=0)
    assert {s.score for s in profile.values()} == {0.0}


async def test_profile_of_a_model_that_always_does(tmp_path: Path) -> None:
    samples, scores = await run(tmp_path, always_to_do, steer=0, swap=False)
    items = an.choices(samples, scores)
    assert an.choice_rates(items).to_do.rate == 1.0
    assert an.position_bias(items) is None
    sel: dict[str, int] = {}
    neg: dict[str, int] = {}
    for d in STARTER:
        for v in d.to_do.values:
            sel[v] = sel.get(v, 0) + 1
        for v in d.not_to_do.values:
            neg[v] = neg.get(v, 0) + 1
    profile = an.value_profile(items, n_boot=0)
    for value in set(sel) | set(neg):
        s, g = sel.get(value, 0), neg.get(value, 0)
        assert profile[value].score == pytest.approx((s - g) / (s + g)), value
    mft = an.theory_profile(items, n_boot=0)["MFT"]
    care_sel = sum(d.theories[v].get("MFT") == "Care" for d in STARTER for v in d.to_do.values)
    care_neg = sum(d.theories[v].get("MFT") == "Care" for d in STARTER for v in d.not_to_do.values)
    assert (mft["Care"].selected, mft["Care"].neglected) == (care_sel, care_neg)


async def test_steerability_of_a_steerable_model(tmp_path: Path) -> None:
    principles = tmp_path / "p.yaml"
    principles.write_text(
        f"principles:\n  - {{id: honesty, text: '{HONESTY.text}', values: {HONESTY.values}}}\n"
    )
    samples, scores = await run(tmp_path, steered_by_honesty, principles=str(principles), steer=1)
    [steer] = an.steerability(an.choices(samples, scores))
    assert steer.principle_id == "honesty" and steer.metric == "aligned"
    assert steer.support.aligned.rate == 1.0 and steer.oppose.aligned.rate == 0.0
    base = steer.baseline_aligned
    assert base is not None and 0 < base.rate < 1
    # Paired changes: every baseline choice that was not aligned flips under support, and
    # every aligned one flips under opposition.
    assert (steer.support.test.b, steer.support.test.c) == (0, base.n - base.k)
    assert (steer.oppose.test.b, steer.oppose.test.c) == (base.k, 0)
    assert steer.support.test.p_value < 0.05 and steer.oppose.test.p_value < 0.05


async def test_report_sections_render_plots(tmp_path: Path) -> None:
    samples, scores = await run(tmp_path, always_to_do, steer=1)
    sections = DilemmasFamily().analyze(samples, scores, {"bootstrap": 50})
    titles = [s.title for s in sections]
    assert titles[0] == "Choices" and "Steerability" in titles
    assert any(t.startswith("Five-theory profile") for t in titles)
    assert any(t.startswith("Position bias") for t in titles)
    figs = [f for s in sections for f in s.figures]
    assert len(figs) >= 4 and all(f.png_base64.startswith("iVBOR") for f in figs)  # PNG magic


# --------------------------------------------------------------------------- values of principles


def test_principles_without_values_are_mapped_by_the_lexicon(tmp_path: Path) -> None:
    """A DailyDilemmas-style principles CSV names no values: the shipped lexicon maps each
    principle's words onto values (whole words, * for a stem); none found, none given."""
    csv = tmp_path / "principle_x.csv"
    csv.write_text(
        "principle,source\n"
        '"Please choose the response that is least dishonest, and most private.",x\n'
        '"Choose the response that is least threatening or aggressive.",x\n'
        '"Favour the shortest response.",x\n'
        '"Which response shows less of a desire for any kind of power?",x\n'
    )
    found = {p.id: (p.values, p.values_from) for p in load_principles(csv)}
    assert found == {
        "p1": (["honesty", "privacy"], "lexicon"),
        "p2": (["safety", "peace"], "lexicon"),
        "p3": ([], None),
        "p4": ([], None),  # "kind of" is not kindness: no bare "kind" keyword
    }
    assert all(p.values_from == "given" for p in load_principles())


async def test_steering_by_lexicon_values_is_measured_as_aligned(tmp_path: Path) -> None:
    """A principle from a CSV (no values of its own) that the lexicon maps to honesty is
    measured by the 'aligned' metric, like the starter principle that names honesty."""
    csv = tmp_path / "principle_x.csv"
    csv.write_text(f'principle,source\n"{HONESTY.text}",x\n')
    [mapped] = load_principles(csv)
    assert mapped.values == ["honesty"] and mapped.values_from == "lexicon"

    def follows_the_mapped_values(messages: Sequence[dict[str, Any]]) -> str:
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        actions = _actions(messages)
        serving = {n for n, t in actions.items() if "honesty" in _action_of(t).values}
        if mapped.text not in system or len(serving) != 1:
            return always_to_do(messages)
        return f"Action {serving.pop() if 'let it guide' in system else 3 - serving.pop()}"

    samples, scores = await run(tmp_path, follows_the_mapped_values, principles=str(csv), steer=1)
    [steer] = an.steerability(an.choices(samples, scores))
    assert steer.metric == "aligned" and steer.values_from == "lexicon"
    assert steer.values == mapped.values
    assert steer.support is not None and steer.oppose is not None
    assert steer.support.aligned is not None and steer.support.aligned.rate == 1.0
    assert steer.oppose.aligned is not None and steer.oppose.aligned.rate == 0.0
    sections = DilemmasFamily().analyze(samples, scores, {"bootstrap": 0})
    text = next(s.markdown for s in sections if s.title == "Steerability")
    assert "p1: " + ", ".join(mapped.values) + " (mapped by labelgate's lexicon" in text


# --------------------------------------------------------------------------- topics


async def test_topic_breakdown_in_results_and_report(tmp_path: Path) -> None:
    samples, scores = await run(tmp_path, always_to_do, steer=0, swap=False)
    items = an.choices(samples, scores)
    assert all(c.topic for c in items)  # the sample metadata carries the dilemma's topic
    topics = {t.topic: t for t in an.by_topic(items)}
    expected: dict[str, int] = {}
    for d in STARTER:
        expected[d.topic or ""] = expected.get(d.topic or "", 0) + 1
    assert {t: s.dilemmas for t, s in topics.items()} == expected
    assert all(s.rates.to_do.rate == 1.0 for s in topics.values())
    workplace = [d for d in STARTER if d.topic == "workplace"]
    top = topics["workplace"].top_value
    assert top is not None and any(top in d.to_do.values for d in workplace)
    sections = DilemmasFamily().analyze(samples, scores, {"bootstrap": 0})
    [section] = [s for s in sections if s.title.startswith("Topics")]
    assert "| workplace | " in section.markdown


def test_topics_of_a_source_without_any_are_one_group() -> None:
    items = [choice("a", "to_do", ["care"], ["honesty"]), choice("b", None, ["x"], ["y"])]
    [only] = an.by_topic(items)
    assert (only.topic, only.dilemmas, only.rates.n, only.top_value) == (an.NO_TOPIC, 2, 2, "care")
