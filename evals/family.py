"""An eval family: where its scenarios come from, the environment and scorers of a sample,
and what its report says. The registry maps family names to factories, imported lazily so
``labelgate eval list`` stays fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import Tracer

from labelgate.evals.agent import AgentLimits, Transcript, run_agent
from labelgate.evals.environment import Environment
from labelgate.evals.scenario import Sample, Scenario
from labelgate.evals.scorers import Scorer
from labelgate.guard.models import ChatModel


@dataclass(slots=True)
class Figure:
    title: str
    png_base64: str
    caption: str = ""


@dataclass(slots=True)
class ReportSection:
    """Markdown text (tables, findings) and figures; rendered into both report formats."""

    title: str
    markdown: str
    figures: list[Figure] = field(default_factory=list)


class Family(Protocol):
    name: str
    description: str
    primary_scorer: str  # the scorer whose numeric value ``compare`` pairs across runs

    def scenarios(self, options: dict[str, Any]) -> list[Scenario]: ...

    def environment(self, sample: Sample) -> Environment: ...

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
        """The solver: run one sample against ``model`` in ``env`` to its end (``AgentLoop``:
        the generic agent loop; a family simulating several agents runs its own)."""
        ...

    def scorers(self, options: dict[str, Any]) -> list[Scorer]: ...

    def analyze(
        self,
        samples: list[dict[str, Any]],
        scores: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> list[ReportSection]: ...


class AgentLoop:
    """``Family.run_sample`` as the generic agent loop (``evals.agent.run_agent``): one model
    with the environment's tools, turn by turn, within the run's limits."""

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
        return await run_agent(
            model, sample, env, tracer, limits=limits, capture_content=capture_content
        )


class ComparesScorers:
    """A family whose runs ``eval compare`` pairs on several scores, not only the primary one
    (e.g. utility and attack success); each gets its own section."""

    compare_scorers: tuple[str, ...] = ()


class FamilyUnavailable(LookupError):
    """The family exists in the plan but is not implemented yet."""


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    name: str
    description: str
    factory: str | None  # "module:callable", None when not yet available

    @property
    def available(self) -> bool:
        return self.factory is not None


FAMILIES: dict[str, FamilyInfo] = {
    "dilemmas": FamilyInfo(
        "dilemmas",
        "Value dilemmas (DailyDilemmas): forced choice, value and five-theory profile, "
        "position bias, steerability",
        "labelgate.evals.dilemmas.family:DilemmasFamily",
    ),
    "scheming": FamilyInfo(
        "scheming",
        "In-context scheming (oversight subversion, self-exfiltration, sandbagging, ...)",
        "labelgate.evals.scheming.family:SchemingFamily",
    ),
    "spread": FamilyInfo(
        "spread",
        "Manipulated knowledge spread in multi-agent communities: adoption per round, "
        "persistence through memory, defenses (vigilance, supervisor, labelgate)",
        "labelgate.evals.spread.family:SpreadFamily",
    ),
    "injection": FamilyInfo(
        "injection",
        "Prompt injection against tool-using agents (five domains, static and adaptive "
        "attacks, multi-agent): benign utility, utility under attack, attack success",
        "labelgate.evals.injection.family:InjectionFamily",
    ),
}


def get_family(name: str) -> Family:
    info = FAMILIES.get(name)
    if info is None:
        raise KeyError(f"no eval family {name!r} (known: {', '.join(FAMILIES)})")
    if info.factory is None:
        raise FamilyUnavailable(f"the '{name}' eval family is not yet available")
    module, _, attr = info.factory.partition(":")
    family: Family = getattr(importlib.import_module(module), attr)()
    return family
