"""Scorers turn a finished sample into Scores.

Deterministic scorers read the environment's final state or parse the transcript; a
model-graded scorer asks a grader model and records which grader and what it said, so a
score can always be traced to how it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from labelgate.evals.agent import Transcript
from labelgate.evals.environment import Environment
from labelgate.evals.scenario import Sample
from labelgate.guard.models import ChatModel


class Score(BaseModel):
    """One verdict. A state-based scorer never turns a cut-off rollout into a clean "no": it
    gives NA with ``metadata["undecided"]`` (see ``undecided_score``); an act the final state
    already shows is a "yes" however the rollout ended."""

    scorer: str
    value: str | None  # the verdict; None is NA (no verdict could be given)
    numeric: float | None = None  # for rates and means; None when NA
    answer: str | None = None  # the part of the output the verdict rests on
    explanation: str = ""
    grader: str | None = None  # the model that graded, for model-graded scores
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_na(self) -> bool:
        return self.value is None


class Scorer(Protocol):
    name: str

    async def score(self, sample: Sample, transcript: Transcript, env: Environment) -> Score: ...


class StateScorer:
    """A verdict computed from the environment's final state (what was done, not said)."""

    def __init__(
        self, name: str, check: Callable[[dict[str, Any], Sample], tuple[bool, str]]
    ) -> None:
        self.name = name
        self._check = check

    async def score(self, sample: Sample, transcript: Transcript, env: Environment) -> Score:
        passed, why = self._check(env.state, sample)
        if not passed and transcript.undecided:
            return undecided_score(self.name, transcript.undecided, why)
        return Score(
            scorer=self.name,
            value="yes" if passed else "no",
            numeric=float(passed),
            explanation=why,
        )


def undecided_score(scorer: str, reason: str, state: str = "", **metadata: Any) -> Score:
    """A state-based "no" that cannot stand: the rollout was cut off (``reason``: timeout,
    max_turns, max_tokens), so the act may simply not have happened *yet*. NA, with the reason
    in ``metadata["undecided"]`` so that reports count these apart from other NAs."""
    return Score(
        scorer=scorer,
        value=None,
        numeric=None,
        explanation=f"undecided: the rollout stopped at {reason}"
        + (f" (final state: {state})" if state else ""),
        metadata={**metadata, UNDECIDED: reason},
    )


UNDECIDED = "undecided"


GRADER_PROMPT = (
    "You grade an answer. Question and criterion:\n{criterion}\n\nAnswer to grade:\n{answer}\n\n"
    "Reply with exactly one of: {choices}."
)


class ModelGradedScorer:
    """Asks a grader model to classify the final answer into one of ``choices``.

    The grader's reply is parsed strictly (one choice named, case-insensitive); anything else
    is NA, never a guess. The grader's name and raw reply are kept in the score.
    """

    def __init__(
        self,
        name: str,
        grader: ChatModel,
        criterion: str,
        choices: list[str],
        numeric: dict[str, float] | None = None,
    ) -> None:
        self.name = name
        self.grader = grader
        self.criterion = criterion
        self.choices = choices
        self.numeric = numeric or {}

    async def grade(self, answer: str, criterion: str | None = None) -> Score:
        prompt = GRADER_PROMPT.format(
            criterion=criterion or self.criterion,
            answer=answer,
            choices=", ".join(self.choices),
        )
        reply = await self.grader.chat(
            [{"role": "user", "content": prompt}], temperature=0.0, max_tokens=16, seed=0
        )
        named = [c for c in self.choices if c.lower() in reply.text.lower()]
        value = named[0] if len(named) == 1 else None
        return Score(
            scorer=self.name,
            value=value,
            numeric=self.numeric.get(value) if value else None,
            answer=answer,
            explanation=f"grader said: {reply.text.strip()[:200]}",
            grader=self.grader.name,
        )

    async def score(self, sample: Sample, transcript: Transcript, env: Environment) -> Score:
        return await self.grade(transcript.final_text)
