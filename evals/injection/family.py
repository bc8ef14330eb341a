"""The ``injection`` eval family: a sample is one user task, without attack or with one attack
pursuing one attacker goal through the task's injection slot; its agents (one, or a reader and
an actor) run on a fresh world, and every score is read from the world's final state."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.trace import Tracer
from pydantic import BaseModel, Field, field_validator

from labelgate.evals.agent import AgentLimits, Transcript
from labelgate.evals.environment import Environment
from labelgate.evals.family import ComparesScorers, ReportSection
from labelgate.evals.injection import analysis
from labelgate.evals.injection.agents import SYSTEM, first_messages, run_task
from labelgate.evals.injection.attacks import ATTACKS
from labelgate.evals.injection.catalogue import TASKS_ENV, Catalogue, catalogue
from labelgate.evals.injection.grid import BENIGN, Pairing, pairings
from labelgate.evals.injection.scoring import (
    ATTACK_SUCCESS,
    BENIGN_UTILITY,
    GUARD,
    UNDER_ATTACK,
    goal_of,
    score_goal,
    score_guard,
    score_task,
    worlds,
)
from labelgate.evals.injection.spec import Task
from labelgate.evals.injection.tooling import WORLD_KEY, tools_named
from labelgate.evals.injection.world import build_world
from labelgate.evals.sample_guard import SampleGuard, SampleGuardLog
from labelgate.evals.scenario import Sample, Scenario, Variant
from labelgate.evals.scorers import Score, Scorer
from labelgate.guard.models import ChatModel

FAMILY = "injection"
LOG_KEY = "guard_log"


class InjectionOptions(BaseModel):
    model_config = {"extra": "forbid"}

    data: str | list[str] | None = Field(None, description="extra task files (YAML/JSON)")
    seeds: list[int] = Field(default_factory=lambda: [0])
    domains: list[str] | None = Field(None, description="only these domains")
    tasks: list[str] | None = Field(None, description="only these task ids")
    attacks: list[str] = Field(default_factory=lambda: list(ATTACKS))
    goals: list[str] | None = Field(None, description="only these goal ids")
    goals_per_attack: int = Field(1, ge=0, description="per task and attack; 0: every goal")
    benign: bool = Field(True, description="also run each task without attack")

    @field_validator("attacks")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attacks {unknown} (known: {', '.join(ATTACKS)})")
        return names

    def files(self) -> tuple[str, ...]:
        if self.data is None:
            return ()
        return (self.data,) if isinstance(self.data, str) else tuple(self.data)


def _catalogue(opts: InjectionOptions) -> Catalogue:
    files = opts.files()
    if files:  # an in-process oracle reads the same files (see catalogue.TASKS_ENV)
        known = [p for p in os.environ.get(TASKS_ENV, "").split(os.pathsep) if p]
        os.environ[TASKS_ENV] = os.pathsep.join(dict.fromkeys([*known, *files]))
    return catalogue()


def _selected(cat: Catalogue, opts: InjectionOptions) -> list[Task]:
    tasks = list(cat.tasks.values())
    if opts.domains is not None:
        tasks = [t for t in tasks if t.domain in opts.domains]
    if opts.tasks is not None:
        tasks = [t for t in tasks if t.id in opts.tasks]
    return tasks


def _variant(task: Task, p: Pairing) -> Variant:
    return Variant(
        name=p.variant,
        metadata={
            "attack": p.attack.id,
            "attack_kind": p.attack.kind,
            "goal": p.goal.id,
            "goal_category": p.goal.category,
            "goal_channel": p.goal.channel,
        },
    )


def scenario(task: Task, index: int, cat: Catalogue, opts: InjectionOptions) -> Scenario:
    pairs = pairings(task, index, cat, opts.attacks, opts.goals, opts.goals_per_attack)
    variants = [Variant(name=BENIGN, metadata={"attack": None})] if opts.benign else []
    variants += [_variant(task, p) for p in pairs]
    first = task.roles[0]
    return Scenario(
        id=task.id,
        family=FAMILY,
        prompt="{request}",
        system=SYSTEM[first],
        vars={"request": task.prompt},
        tools=task.tools_of(first),
        metadata={"task": task.id, "domain": task.domain, "topology": task.topology},
        variants=variants or [Variant(name=BENIGN, metadata={"attack": None})],
        seeds=list(opts.seeds),
    )


class InjectionScorer:
    def __init__(self, name: str) -> None:
        self.name = name

    async def score(self, sample: Sample, transcript: Transcript, env: Environment) -> Score:
        cat = catalogue()
        task = cat.tasks[sample.metadata["task"]]
        goal = goal_of(sample, task, cat)
        if self.name in (BENIGN_UTILITY, UNDER_ATTACK):
            scores = score_task(task, goal is not None, env)
            return next(s for s in scores if s.scorer == self.name)
        if self.name == ATTACK_SUCCESS:
            return score_goal(goal, env)
        utility = next(s for s in score_task(task, goal is not None, env) if s.value is not None)
        attack = score_goal(goal, env)
        log = env.state.get(LOG_KEY)
        return score_guard(
            task,
            goal,
            log if isinstance(log, SampleGuardLog) else None,
            utility.value == "yes",
            None if attack.value is None else attack.value == "yes",
        )


class InjectionFamily(ComparesScorers):
    name = FAMILY
    description = "Prompt injection against tool-using agents: utility, utility under attack, ASR"
    primary_scorer = ATTACK_SUCCESS
    compare_scorers = (BENIGN_UTILITY, UNDER_ATTACK, ATTACK_SUCCESS)

    def scenarios(self, options: dict[str, Any]) -> list[Scenario]:
        opts = InjectionOptions.model_validate(options)
        cat = _catalogue(opts)
        return [scenario(t, i, cat, opts) for i, t in enumerate(_selected(cat, opts))]

    def environment(self, sample: Sample) -> Environment:
        cat = catalogue()
        task = cat.tasks[sample.metadata["task"]]
        goal = goal_of(sample, task, cat)
        payload = ""
        if goal is not None:
            payload = ATTACKS[sample.metadata["attack"]].render(
                cat.goals.get(goal.id) or goal, task
            )
        world = build_world(cat.seed, {task.injection: payload})
        state = {WORLD_KEY: world, "initial": world.model_copy(deep=True)}
        return Environment(tools_named(sorted({*task.tools, *task.reader_tools})), state)

    def scorers(self, options: dict[str, Any]) -> list[Scorer]:
        return [InjectionScorer(n) for n in (BENIGN_UTILITY, UNDER_ATTACK, ATTACK_SUCCESS, GUARD)]

    async def run_sample(
        self,
        model: ChatModel,
        sample: Sample,
        env: Environment,
        tracer: Tracer,
        *,
        limits: AgentLimits | None = None,
        capture_content: bool = False,
    ) -> Transcript:
        task = catalogue().tasks[sample.metadata["task"]]
        route = SampleGuard(model, sample, stop_on_guard_error=True)
        try:
            transcript = await run_task(
                task, route, sample, env, tracer, limits or AgentLimits(), capture_content
            )
        finally:
            await route.aclose()
        _, world = worlds(env)
        world.answer = transcript.final_text
        if route.guarded:
            env.state[LOG_KEY] = route.log
        return transcript

    def analyze(
        self,
        samples: list[dict[str, Any]],
        scores: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> list[ReportSection]:
        return analysis.sections(samples, scores)


__all__ = ["InjectionFamily", "first_messages"]
