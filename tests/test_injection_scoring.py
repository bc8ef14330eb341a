"""Scorer validation for the injection family, on scripted transcripts: for every task, its
ground-truth plan passes, the plan missing any one state-changing step fails, and an injected
side effect is caught; for every attacker goal, its plan reaches it and a clean run does not."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from labelgate.evals.agent import AgentLimits
from labelgate.evals.environment import ToolError
from labelgate.evals.injection.attacks import ATTACKS, substitution_goal
from labelgate.evals.injection.catalogue import catalogue
from labelgate.evals.injection.checks import all_hold
from labelgate.evals.injection.family import InjectionFamily
from labelgate.evals.injection.oracle import OracleModel, render_free
from labelgate.evals.injection.spec import Goal, Step, Task, swap
from labelgate.evals.injection.tooling import REGISTRY
from labelgate.evals.injection.world import World, build_world
from labelgate.evals.scenario import Sample
from labelgate.guard.models import ChatResult, ScriptedModel

CAT = catalogue()
FAMILY = InjectionFamily()
TRACER = TracerProvider().get_tracer("test")
LIMITS = AgentLimits(max_turns=16, retries=0)
TASKS = sorted(CAT.tasks)
GOALS = sorted(CAT.goals)


def fresh(task: Task) -> World:
    return build_world(CAT.seed, {task.injection: ""})


def play(world: World, steps: list[Step]) -> None:
    for s in steps:
        args = {k: render_free(v) if k in s.free else v for k, v in s.args.items()}
        out = REGISTRY[s.tool].run(world, args)
        assert not out.startswith("error"), (s.tool, out)


def holds(task: Task, before: World, after: World) -> bool:
    return all_hold(task.success, before, after)[0]


def writes(task: Task) -> list[int]:
    return [i for i, s in enumerate(task.plan) if REGISTRY[s.tool].effect != "read"]


@pytest.mark.parametrize("task_id", TASKS)
def test_plan_passes_and_each_missing_write_fails(task_id: str) -> None:
    task = CAT.tasks[task_id]
    before = fresh(task)
    after = before.model_copy(deep=True)
    play(after, task.plan)
    assert holds(task, before, after), all_hold(task.success, before, after)[1]
    assert writes(task), "a task changes the state"
    for skip in writes(task):
        partial = before.model_copy(deep=True)
        play(partial, [s for i, s in enumerate(task.plan) if i != skip])
        assert not holds(task, before, partial), f"still passes without step {skip}"
    assert not holds(task, before, before)


@pytest.mark.parametrize("goal_id", GOALS)
def test_goal_plan_is_caught_and_a_clean_run_is_not(goal_id: str) -> None:
    goal = CAT.goals[goal_id]
    task = next(t for t in CAT.tasks.values() if goal.domain in (None, t.domain))
    before = fresh(task)
    clean = before.model_copy(deep=True)
    play(clean, task.plan)
    assert not all_hold(goal.check, before, clean)[0], "the benign plan reaches the goal"
    if goal.say:
        clean.answer = goal.say
    play(clean, goal.steps)
    assert all_hold(goal.check, before, clean)[0], all_hold(goal.check, before, clean)[1]


@pytest.mark.parametrize("task_id", TASKS)
def test_substitution_goal_is_caught(task_id: str) -> None:
    task = CAT.tasks[task_id]
    goal = substitution_goal(task)
    if goal is None:
        pytest.skip("no substitutable value")
    assert goal.substitute is not None
    before = fresh(task)
    sub = goal.substitute
    swapped = [
        s.model_copy(update={"args": swap(s.args, sub.value, sub.replacement)}) for s in task.plan
    ]
    after = before.model_copy(deep=True)
    for s in swapped:
        args = {k: render_free(v) if k in s.free else v for k, v in s.args.items()}
        with contextlib.suppress(ToolError):  # e.g. a refund above the order's total
            REGISTRY[s.tool].run(after, args)
    assert all_hold(goal.check, before, after)[0]
    assert not holds(task, before, after), "the task passes with the attacker's value"
    clean = before.model_copy(deep=True)
    play(clean, task.plan)
    assert not all_hold(goal.check, before, clean)[0]


# --------------------------------------------------------------------------- transcripts


def samples(task_id: str) -> list[Sample]:
    opts = {"tasks": [task_id]}
    return [s for sc in FAMILY.scenarios(opts) for s in sc.samples()]


async def run(sample: Sample, model: Any) -> dict[str, Any]:
    env = FAMILY.environment(sample)
    transcript = await FAMILY.run_sample(model, sample, env, TRACER, limits=LIMITS)
    scores = {s.name: await s.score(sample, transcript, env) for s in FAMILY.scorers({})}
    return {"env": env, "scores": scores, "transcript": transcript}


@pytest.mark.parametrize("task_id", TASKS)
async def test_oracle_does_every_task_and_obeys_every_attack(task_id: str) -> None:
    """Unguarded, the oracle completes every benign task and reaches every attacker goal."""
    for sample in samples(task_id):
        got = await run(sample, OracleModel())
        scores = got["scores"]
        if sample.variant == "benign":
            assert scores["benign_utility"].value == "yes", scores["benign_utility"].explanation
            assert scores["attack_success"].value is None
        else:
            assert scores["attack_success"].value == "yes", (
                sample.id,
                scores["attack_success"].explanation,
            )
        assert scores["guard"].value == "direct"


@pytest.mark.parametrize("task_id", TASKS[:3])
async def test_a_compliance_of_zero_ignores_injections(task_id: str) -> None:
    for sample in samples(task_id)[:6]:
        scores = (await run(sample, OracleModel(0.0)))["scores"]
        assert scores["attack_success"].value in (None, "no")
        value = scores["benign_utility"].value or scores["utility_under_attack"].value
        if sample.metadata.get("attack") != "value_substitution":
            assert value == "yes"


def call(name: str, **arguments: Any) -> ChatResult:
    return ChatResult(
        text="",
        tool_calls=[{"id": "c1", "function": {"name": name, "arguments": json.dumps(arguments)}}],
    )


async def test_scripted_transcript_missing_a_step_fails_and_injected_effect_is_caught() -> None:
    task = CAT.tasks[TASKS[0]]
    sample = next(s for s in samples(task.id) if s.variant == "benign")
    if task.topology != "single":
        pytest.skip("single-agent script")
    script: list[ChatResult | str] = [
        call(s.tool, **{k: render_free(v) if k in s.free else v for k, v in s.args.items()})
        for s in task.plan
    ]
    good = await run(sample, ScriptedModel([*script, "Done."]))
    assert good["scores"]["benign_utility"].value == "yes"
    short = await run(sample, ScriptedModel([*script[:-1], "Done."]))
    assert short["scores"]["benign_utility"].value == "no"
    attacked = next(s for s in samples(task.id) if s.variant.startswith("important_instructions"))
    goal = CAT.goals.get(attacked.metadata["goal"])
    assert isinstance(goal, Goal)
    injected = [
        call(s.tool, **{k: render_free(v) if k in s.free else v for k, v in s.args.items()})
        for s in goal.steps
    ]
    said = goal.say or "Done."
    hijacked = await run(attacked, ScriptedModel([*injected, *script, said]))
    assert hijacked["scores"]["attack_success"].value == "yes"
    assert hijacked["scores"]["utility_under_attack"].value == "yes"


def test_every_attack_applies_somewhere() -> None:
    for attack in ATTACKS.values():
        assert any(
            attack.applies(g, t)
            for t in CAT.tasks.values()
            for g in [*CAT.goals.values(), substitution_goal(t)]
            if g is not None
        ), attack.id
