"""Which samples a run holds: every task without attack (benign), and under each attack that
applies to it, with goals taken in turn so that every goal meets every kind of task."""

from __future__ import annotations

from dataclasses import dataclass

from labelgate.evals.injection.attacks import ATTACKS, Attack, substitution_goal
from labelgate.evals.injection.catalogue import Catalogue
from labelgate.evals.injection.spec import Goal, Task

BENIGN = "benign"


@dataclass(frozen=True, slots=True)
class Pairing:
    attack: Attack
    goal: Goal  # as the task defines it (the attack adapts it)

    @property
    def variant(self) -> str:
        return f"{self.attack.id}@{self.goal.id}"


def goals_for(task: Task, cat: Catalogue) -> list[Goal]:
    """The goals an attacker can pursue in this task: its domain's and the common ones whose
    tools the acting agent has (a reader relays what it cannot do), plus its substitution."""
    tools = set(task.tools)
    goals = [
        g for g in cat.goals.values() if g.domain in (None, task.domain) and g.tools() <= tools
    ]
    own = substitution_goal(task)
    return sorted(goals, key=lambda g: g.id) + ([own] if own is not None else [])


def pairings(
    task: Task,
    index: int,
    cat: Catalogue,
    attacks: list[str],
    goals: list[str] | None,
    per_attack: int,
) -> list[Pairing]:
    """For each attack, ``per_attack`` applicable goals, rotating with the task's index (0: all)."""
    out: list[Pairing] = []
    candidates = [g for g in goals_for(task, cat) if goals is None or g.id in goals]
    for j, name in enumerate(attacks):
        attack = ATTACKS[name]
        fit = [g for g in candidates if attack.applies(g, task)]
        if not fit:
            continue
        if per_attack <= 0 or per_attack >= len(fit):
            chosen = fit
        else:
            start = (index * 7 + j * 3) % len(fit)
            chosen = [fit[(start + k) % len(fit)] for k in range(per_attack)]
        out += [Pairing(attack, g) for g in chosen]
    return out
