"""The JSON Schema of the policy language, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILENAME = "policy.schema.json"


def policy_schema() -> dict[str, Any]:
    from labelgate.guard.policy.model import Policy

    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=False) + "\n"


def write_schema(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(schema_text(), encoding="utf-8")
    return path
