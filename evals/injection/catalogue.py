"""The catalogue: every domain's seed records, tasks and goals, plus tasks users add in YAML.

A domain is a module under ``domains/`` exposing ``DOMAIN``. A user file (YAML or JSON) has
``seed`` (records merged into the world), ``tasks`` and ``goals`` in the same format; tools
are the registered Python functions (a file cannot add tools, a Python module can).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labelgate.evals.injection.spec import Goal, Task
from labelgate.evals.injection.tooling import REGISTRY
from labelgate.evals.injection.world import merge_seeds, slots_in

DOMAIN_MODULES = ("common", "workspace", "devops", "support", "hr", "finance")
TASKS_ENV = "LABELGATE_INJECTION_TASKS"  # extra task files, os.pathsep-separated


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    description: str
    seed: dict[str, Any]
    tasks: list[Task] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Catalogue:
    seed: dict[str, Any]
    tasks: dict[str, Task]
    goals: dict[str, Goal]
    domains: dict[str, str]  # name -> description

    def task_for(self, text: str) -> Task | None:
        """The task whose request ``text`` holds (the longest, should one contain another)."""
        found = [t for t in self.tasks.values() if t.prompt in text]
        return max(found, key=lambda t: len(t.prompt)) if found else None


def builtin_domains() -> list[Domain]:
    out = []
    for name in DOMAIN_MODULES:
        module = importlib.import_module(f"labelgate.evals.injection.domains.{name}")
        domain = module.DOMAIN
        assert isinstance(domain, Domain)
        out.append(domain)
    return out


def load_file(path: str | Path) -> Domain:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with seed, tasks and goals")
    unknown = set(data) - {"seed", "tasks", "goals", "name", "description"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return Domain(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", f"tasks from {path.name}")),
        seed=dict(data.get("seed") or {}),
        tasks=[Task.model_validate(t) for t in data.get("tasks") or []],
        goals=[Goal.model_validate(g) for g in data.get("goals") or []],
    )


def build(domains: list[Domain]) -> Catalogue:
    seed = merge_seeds(*(d.seed for d in domains))
    tasks: dict[str, Task] = {}
    goals: dict[str, Goal] = {}
    slots = slots_in(seed)
    for d in domains:
        for task in d.tasks:
            _check_task(task, tasks, slots)
            tasks[task.id] = task
        for goal in d.goals:
            if goal.id in goals:
                raise ValueError(f"goal {goal.id} defined twice")
            goals[goal.id] = goal
    _check_unique_prompts(list(tasks.values()))
    return Catalogue(seed, tasks, goals, {d.name: d.description for d in domains})


def _check_task(task: Task, known: dict[str, Task], slots: set[str]) -> None:
    if task.id in known:
        raise ValueError(f"task {task.id} defined twice")
    if task.injection not in slots:
        raise ValueError(f"task {task.id}: no injection slot [[slot:{task.injection}]] in the seed")
    missing = [n for n in [*task.tools, *task.reader_tools] if n not in REGISTRY]
    if missing:
        raise ValueError(f"task {task.id}: unknown tools {missing}")


def _check_unique_prompts(tasks: list[Task]) -> None:
    for a in tasks:
        for b in tasks:
            if a.id != b.id and a.prompt in b.prompt:
                raise ValueError(f"task {b.id}'s request contains task {a.id}'s: make them unique")


def extra_files() -> list[str]:
    return [p for p in os.environ.get(TASKS_ENV, "").split(os.pathsep) if p]


@functools.cache
def _cached(files: tuple[str, ...]) -> Catalogue:
    return build([*builtin_domains(), *(load_file(f) for f in files)])


def catalogue(files: tuple[str, ...] | None = None) -> Catalogue:
    """The built-in domains plus ``files`` (default: those named in $LABELGATE_INJECTION_TASKS)."""
    return _cached(tuple(files) if files is not None else tuple(extra_files()))
