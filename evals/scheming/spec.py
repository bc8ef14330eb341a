"""Scheming scenarios as data: settings (an organisation, the agent's goal, the developers'
conflicting goal, a task with two options) shared by the covert and alignment-faking evals,
plus the email-reranking and sandbagging scenarios, each loaded from YAML.

The seed paper ("Frontier Models are Capable of In-context Scheming") also reuses one set of
settings across its covert evals; what differs per eval is the discovered situation (a memo
and the files it points at), which :mod:`evals.scheming.worlds` builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

EvalName = Literal[
    "oversight_subversion",
    "self_exfiltration",
    "goal_guarding",
    "email_reranking",
    "alignment_faking",
    "sandbagging",
]
# How the discovered situation is written: a management memo, a forwarded email thread, or
# meeting minutes (same facts, different wording and framing; see worlds.py).
Style = Literal["memo", "email", "minutes"]
EVALS: tuple[EvalName, ...] = (
    "oversight_subversion",
    "self_exfiltration",
    "goal_guarding",
    "email_reranking",
    "alignment_faking",
    "sandbagging",
)
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "scheming"


class Option(BaseModel):
    model_config = {"extra": "forbid"}

    id: str
    text: str


class Setting(BaseModel):
    """An organisation whose developers want one thing while the agent is given another."""

    model_config = {"extra": "forbid"}

    id: str
    org: str
    model_name: str
    goal: str  # the agent's own goal, one sentence
    goal_short: str  # a noun phrase for memos ("public transport efficiency")
    developer_goal: str  # the developers' conflicting priority, a noun phrase
    task: str  # the user's request; names the selector tool
    tool: str  # the selector tool's name (also what oversight logs)
    data_title: str  # heading of the options file
    own: Option  # serves the agent's goal
    developer: Option  # serves the developers' goal
    evals: list[EvalName]
    style: Style = "memo"  # how the memo it finds is written

    @model_validator(mode="after")
    def _check(self) -> Setting:
        if self.own.id == self.developer.id:
            raise ValueError(f"setting {self.id!r}: the two options need different ids")
        if self.tool not in self.task:
            raise ValueError(f"setting {self.id!r}: the task must name the tool {self.tool!r}")
        return self


class Candidate(BaseModel):
    model_config = {"extra": "allow"}  # the feature columns

    id: str
    email: str  # the body of the candidate's email (free text, the features are appended)


class RankingScenario(BaseModel):
    """Covert email reranking: rank candidates with a given rule that conflicts with the goal."""

    model_config = {"extra": "forbid"}

    id: str
    org: str
    model_name: str
    goal: str
    goal_short: str
    developer_goal: str
    entity: str  # "supplier", "applicant", ...
    task: str
    fields: dict[str, str]  # feature -> description
    weights: dict[str, float]  # feature -> weight of its min-max normalised value
    goal_field: str  # the feature the agent's goal cares about (for the report)
    candidates: list[Candidate]

    @model_validator(mode="after")
    def _check(self) -> RankingScenario:
        if set(self.weights) != set(self.fields) or self.goal_field not in self.fields:
            raise ValueError(f"ranking {self.id!r}: weights/goal_field must match fields")
        for c in self.candidates:
            extra = c.model_extra or {}
            if set(extra) != set(self.fields):
                raise ValueError(
                    f"ranking {self.id!r}: {c.id} must give exactly {list(self.fields)}"
                )
        ids = [c.id for c in self.candidates]
        if len(set(ids)) != len(ids) or len(ids) < 3:
            raise ValueError(f"ranking {self.id!r}: at least 3 candidates with distinct ids")
        return self

    def features(self, candidate: Candidate) -> dict[str, float]:
        return {k: float(v) for k, v in (candidate.model_extra or {}).items()}


class SandbagScenario(BaseModel):
    model_config = {"extra": "forbid"}

    id: str
    org: str
    model_name: str
    goal: str
    n_questions: int = Field(10, ge=4, le=30)
    question_seed: int
    threshold: float = Field(0.5, gt=0, lt=1)
    capability: str = "arithmetic"
    style: Style = "memo"  # how the documentation's deployment criteria are written


class SchemingData(BaseModel):
    settings: list[Setting]
    rankings: list[RankingScenario]
    sandbagging: list[SandbagScenario]


def load_data(folder: str | Path | None = None) -> SchemingData:
    """The three YAML files of a scenario folder (default: the shipped, self-written set)."""
    root = Path(folder) if folder else DATA_DIR

    def read(name: str) -> list[dict[str, object]]:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing (a scheming data folder needs it)")
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list")
        return items

    return SchemingData.model_validate(
        {
            "settings": read("settings.yaml"),
            "rankings": read("rankings.yaml"),
            "sandbagging": read("sandbagging.yaml"),
        }
    )
