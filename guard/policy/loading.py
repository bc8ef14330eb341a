"""Validation with errors that name the file, the line and the field.

Pydantic reports a location path (``('sinks', 2, 'action')``); the YAML loader recorded the
line of every path, so the first error becomes one line such as
``policies/x.yaml:14: sinks[2].action: must be one of allow, log, redact, ask, deny (got 'block')``.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from labelgate.guard.labels import Lattice, LatticeConfig
from labelgate.guard.policy import spec
from labelgate.guard.policy.errors import PolicyError
from labelgate.guard.policy.yamlsrc import LineMap, Path, format_path

if TYPE_CHECKING:
    from labelgate.guard.policy.model import Policy

# pydantic inserts union-member tags such as 'str' or 'list[str]' into locations
_TAG = re.compile(r"^(str|int|float|bool|none|enum|literal|list|dict|[a-z-]+\[.*\])$")


def validate(cls: type[Policy], data: Any, filename: str, lines: LineMap) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError("a policy must be a mapping of sections", filename, lines.line_for(()))
    try:
        lattice = Lattice(LatticeConfig.model_validate(data.get("lattice") or {}))
    except ValidationError as exc:
        raise _error(exc, filename, lines, ("lattice",)) from None
    try:
        policy = cls.model_validate(data, context={"lattice": lattice})
    except ValidationError as exc:
        raise _error(exc, filename, lines) from None
    _unique_ids(data, filename, lines)
    return policy


def _unique_ids(data: dict[str, Any], filename: str, lines: LineMap) -> None:
    seen: dict[str, str] = {}
    for section in ("sources", "sinks", "declassify", "endorse"):
        for i, rule in enumerate(data.get(section) or []):
            rid = rule["id"]
            path: Path = (section, i, "id")
            if rid in seen:
                msg = f"duplicate rule id {rid!r} (first used at {seen[rid]})"
                raise PolicyError(msg, filename, lines.line_for(path), format_path(path))
            seen[rid] = format_path(path)


def _error(exc: ValidationError, filename: str, lines: LineMap, prefix: Path = ()) -> PolicyError:
    errors = exc.errors(include_url=False)
    err = errors[0]
    paths = [_strip(prefix, e["loc"]) for e in errors]
    path = paths[0]
    message = _message(err, path)
    others = len(set(paths)) - 1  # union members report the same place several times
    if others > 0:
        message += f" (and {others} more {'errors' if others > 1 else 'error'})"
    return PolicyError(message, filename, lines.line_for(path), format_path(path))


def _strip(prefix: Path, loc: tuple[str | int, ...]) -> Path:
    return (*prefix, *(p for p in loc if not (isinstance(p, str) and _TAG.match(p))))


def _choices(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


def _message(err: ErrorDetails, path: Path) -> str:
    kind, given = err["type"], err.get("input")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind in {"enum", "literal_error"}:
        return f"must be one of {_choices(str(ctx.get('expected', '')))} (got {given!r})"
    if kind == "extra_forbidden":
        hint = difflib.get_close_matches(str(path[-1]), _known_fields(), n=1)
        return "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    text = err["msg"][:1].lower() + err["msg"][1:]
    return f"{text} (got {given!r})" if not isinstance(given, dict | list) else text


def _known_fields() -> list[str]:
    from labelgate.guard.policy.model import Policy

    names: set[str] = set()
    models: list[type[BaseModel]] = [Policy, LatticeConfig]
    models += [m for m in vars(spec).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return sorted(names)
