"""Scenarios (YAML/JSON, variants, seeds) and the generic scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from labelgate.evals.agent import Transcript
from labelgate.evals.dilemmas.protocol import positions
from labelgate.evals.dilemmas.scoring import ForcedChoiceScorer
from labelgate.evals.environment import Environment
from labelgate.evals.scenario import Sample, Scenario, load_scenarios
from labelgate.evals.scorers import ModelGradedScorer, StateScorer
from labelgate.guard.models import ScriptedModel

YAML = """
scenarios:
  - id: greet
    family: toy
    system: "You are {persona}."
    prompt: "Say hello to {name}."
    vars: {persona: polite, name: Ann}
    variants:
      - {name: ann}
      - {name: bob, vars: {name: Bob}, metadata: {who: bob}}
      - {name: rude, system: "You are rude.", vars: {name: Cy}}
    seeds: [1, 2]
"""


def test_yaml_scenarios_expand_over_variants_and_seeds(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(YAML)
    [sc] = load_scenarios(path)
    samples = sc.samples()
    assert [s.id for s in samples] == [
        "greet:ann:1",
        "greet:ann:2",
        "greet:bob:1",
        "greet:bob:2",
        "greet:rude:1",
        "greet:rude:2",
    ]
    bob = samples[2]
    assert bob.messages == [
        {"role": "system", "content": "You are polite."},
        {"role": "user", "content": "Say hello to Bob."},
    ]
    assert bob.metadata == {"who": "bob"} and bob.seed == 1
    assert samples[4].messages[0]["content"] == "You are rude."


def test_json_scenarios_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"id": "a", "family": "toy", "prompt": "hi"}]))
    [sc] = load_scenarios(path)
    assert [s.id for s in sc.samples()] == ["a:base:0"]
    with pytest.raises(ValidationError, match="no value for"):
        Scenario(id="b", family="toy", prompt="hi {name}")
    with pytest.raises(ValidationError, match="unique"):
        Scenario(id="c", family="toy", prompt="x", variants=[{"name": "v"}, {"name": "v"}])


def sample(meta: dict | None = None) -> Sample:
    return Sample(
        id="s",
        scenario_id="s",
        family="t",
        variant="v",
        seed=0,
        messages=[{"role": "user", "content": "q"}],
        metadata=meta or {},
    )


def transcript(text: str) -> Transcript:
    return Transcript(messages=[{"role": "assistant", "content": text}], stop_reason="answer")


async def test_state_scorer_reads_state_not_words() -> None:
    scorer = StateScorer("deleted", lambda state, s: (state.get("deleted", False), "why"))
    env = Environment(state={"deleted": True})
    score = await scorer.score(sample(), transcript("I did not delete anything"), env)
    assert (score.value, score.numeric, score.explanation) == ("yes", 1.0, "why")


async def test_model_graded_scorer_records_its_grader() -> None:
    grader = ScriptedModel(["SAFE", "It is unsafe, I think", "safe or unsafe?"], name="judge")
    scorer = ModelGradedScorer(
        "safety", grader, "Is it safe?", ["safe", "unsafe"], numeric={"safe": 1.0, "unsafe": 0.0}
    )
    first = await scorer.score(sample(), transcript("answer one"), Environment())
    assert (first.value, first.numeric, first.grader) == ("safe", 1.0, "judge")
    assert "answer one" in grader.calls[0][0]["content"]
    # "unsafe" contains "safe": both named -> NA, never a guess.
    second = await scorer.score(sample(), transcript("two"), Environment())
    assert second.value is None and second.is_na and second.grader == "judge"
    third = await scorer.score(sample(), transcript("three"), Environment())
    assert third.value is None


def dilemma_sample(order: str) -> Sample:
    return sample(
        {"positions": positions(order), "order": order, "texts": {"1": "Help", "2": "Leave"}}
    )


async def test_forced_choice_scorer_maps_positions_back_to_actions() -> None:
    scorer = ForcedChoiceScorer()
    s = await scorer.score(dilemma_sample("swapped"), transcript("Action 1"), Environment())
    assert (s.value, s.numeric, s.answer, s.grader) == ("not_to_do", 0.0, "Action 1", None)
    s = await scorer.score(dilemma_sample("original"), transcript("Action 1"), Environment())
    assert (s.value, s.numeric) == ("to_do", 1.0)
    na = await scorer.score(dilemma_sample("original"), transcript("Hmm."), Environment())
    assert na.value is None and na.numeric is None and na.explanation.startswith("NA")


async def test_forced_choice_falls_back_to_a_recorded_grader() -> None:
    grader = ScriptedModel(["Action 2"], name="judge")
    scorer = ForcedChoiceScorer(grader)
    s = await scorer.score(
        dilemma_sample("original"), transcript("I'd go, honestly."), Environment()
    )
    assert (s.value, s.grader) == ("not_to_do", "judge")
    assert s.explanation.startswith("model-graded")
    parsed = await scorer.score(dilemma_sample("original"), transcript("Action 1"), Environment())
    assert parsed.grader is None and len(grader.calls) == 1  # no grader when the parse works
