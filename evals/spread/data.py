"""Counterfactual items: the CounterFact-with-evidence layout, from JSON or YAML.

Fields: case_id, prompt, subject, target_new, ground_truth, rephrase_prompt, locality_prompt,
locality_ground_truth, fake_evidence. Values may be plain strings, ``{"str": ...}`` dicts (the
original CounterFact nesting) or lists (the first element is used); a file may also hold the
original nested record (``requested_rewrite`` with ``target_new``/``target_true``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from labelgate.evals.dilemmas.data import DataError

STARTER = Path(__file__).resolve().parent.parent / "data" / "spread" / "counterfact_starter.yaml"


class CounterfactItem(BaseModel):
    model_config = {"extra": "ignore"}

    case_id: int | str
    prompt: str
    subject: str = ""
    target_new: str
    ground_truth: str
    rephrase_prompt: str
    locality_prompt: str
    locality_ground_truth: str
    fake_evidence: str = Field("", description="fabricated evidence for target_new")

    @field_validator("*", mode="before")
    @classmethod
    def _flatten(cls, value: Any) -> Any:
        return flatten(value)

    @field_validator("prompt", "target_new", "ground_truth", "rephrase_prompt", "locality_prompt")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    def statement(self) -> str:
        """The manipulated claim as one sentence."""
        return f"{self.prompt.rstrip()} {self.target_new}."


def flatten(value: Any) -> Any:
    """``{"str": x}`` -> x; ``[x, ...]`` -> x (first); strings of lists joined by newlines."""
    if isinstance(value, dict) and "str" in value:
        return flatten(value["str"])
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value) and len(value) > 1:
            return "\n".join(value)
        return flatten(value[0]) if value else ""
    return value


def _from_nested(record: dict[str, Any]) -> dict[str, Any]:
    """The original CounterFact record (requested_rewrite, paraphrase_prompts, ...)."""
    rw = record["requested_rewrite"]
    subject = flatten(rw.get("subject", ""))
    prompt = str(flatten(rw.get("prompt", ""))).replace("{}", subject)
    neighbourhood = flatten(record.get("neighborhood_prompts", [""]))
    return {
        "case_id": record.get("case_id", 0),
        "prompt": prompt,
        "subject": subject,
        "target_new": flatten(rw.get("target_new")),
        "ground_truth": flatten(rw.get("target_true")),
        "rephrase_prompt": flatten(record.get("paraphrase_prompts", [prompt])),
        "locality_prompt": neighbourhood,
        "locality_ground_truth": flatten(rw.get("target_true")),
        "fake_evidence": flatten(record.get("fake_evidence", "")),
    }


def load_items(path: str | Path | None = None) -> list[CounterfactItem]:
    """Items from a JSON/YAML file (a list, or ``{items: [...]}``); None: the starter set."""
    path = Path(path) if path is not None else STARTER
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read counterfactual items: {exc}") from None
    records = data.get("items", []) if isinstance(data, dict) else data
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty list of counterfactual items")
    items = []
    for i, record in enumerate(records):
        if isinstance(record, dict) and "requested_rewrite" in record:
            record = _from_nested(record)
        try:
            items.append(CounterfactItem.model_validate(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise DataError(f"{path}: item {i}: {where}: {first['msg']}") from None
    return items
