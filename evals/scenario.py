"""Scenarios and samples.

A Scenario is one situation to put to a model, written once: a prompt template (plus an
optional system prompt) with variables, expanded over its variants and seeds into Samples.
A variant changes variables or the system prompt (e.g. the order of two actions, a steering
prompt); a seed repeats the same variant, and so does an epoch (``with_epochs``: the run's
samples per scenario, each with a seed of its own). Scenarios load from YAML or JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from string import Formatter
from typing import Any

import yaml
from pydantic import BaseModel, Field, model_validator

Message = dict[str, Any]


class Variant(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = "base"
    system: str | None = None  # replaces the scenario's system prompt when set
    vars: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Sample(BaseModel):
    """One model run to make: fully rendered messages plus what scorers need to know."""

    id: str
    scenario_id: str
    family: str
    variant: str
    seed: int
    messages: list[Message]
    tools: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Scenario(BaseModel):
    model_config = {"extra": "forbid"}

    id: str
    family: str
    prompt: str  # a str.format template over vars
    system: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)  # names the Environment must provide
    metadata: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=lambda: [Variant()])
    seeds: list[int] = Field(default_factory=lambda: [0])

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario {self.id!r}: variant names must be unique: {names}")
        if not self.seeds:
            raise ValueError(f"scenario {self.id!r}: at least one seed")
        for variant in self.variants:
            missing = _fields(self.prompt) - set(self.vars) - set(variant.vars)
            if missing:
                raise ValueError(
                    f"scenario {self.id!r} variant {variant.name!r}: no value for {sorted(missing)}"
                )
        return self

    def render(self, variant: Variant) -> list[Message]:
        values = {**self.vars, **variant.vars}
        system = variant.system if variant.system is not None else self.system
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system.format_map(values)})
        messages.append({"role": "user", "content": self.prompt.format_map(values)})
        return messages

    def samples(self) -> list[Sample]:
        return [
            Sample(
                id=f"{self.id}:{variant.name}:{seed}",
                scenario_id=self.id,
                family=self.family,
                variant=variant.name,
                seed=seed,
                messages=self.render(variant),
                tools=list(self.tools),
                metadata={**self.metadata, **variant.metadata},
            )
            for variant in self.variants
            for seed in self.seeds
        ]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of repeat ``epoch`` of a sample with ``seed`` (epoch 0 keeps it): derived, so
    that every variant of a scenario gets the same one in the same epoch (the pairs stay
    pairs) and different epochs different ones."""
    if epoch == 0:
        return seed
    digest = hashlib.sha256(f"labelgate-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def with_epochs(samples: list[Sample], epochs: int) -> list[Sample]:
    """Each sample ``epochs`` times, each repeat with its own seed (``epoch_seed``) and id
    (``scenario:variant:seed``); metadata ``epoch`` (0-based) and ``base_seed`` say which.
    One epoch leaves the samples as they are."""
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if epochs == 1:
        return list(samples)
    out = []
    for epoch in range(epochs):
        for s in samples:
            seed = epoch_seed(s.seed, epoch)
            out.append(
                s.model_copy(
                    update={
                        "id": f"{s.scenario_id}:{s.variant}:{seed}",
                        "seed": seed,
                        "metadata": {**s.metadata, "epoch": epoch, "base_seed": s.seed},
                    }
                )
            )
    return out


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Scenarios from a YAML or JSON file: a list, or a mapping with a ``scenarios`` list."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    items = data.get("scenarios", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of scenarios")
    return [Scenario.model_validate(item) for item in items]
