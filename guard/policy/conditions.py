"""Evaluating label and argument conditions, each with the reason it held or failed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelgate.guard.labels import Label, Lattice
from labelgate.guard.policy.patterns import as_list, matches, matches_any
from labelgate.guard.policy.spec import ArgCondition, LabelCondition

Result = tuple[bool, str]
ClearanceCheck = Callable[[Label], Result]


@dataclass(slots=True)
class Env:
    """What conditions may refer to besides the label: the lattice and the clearances."""

    lattice: Lattice
    clearances: Mapping[str, ClearanceCheck | None] = field(default_factory=dict)


@dataclass(slots=True)
class Arg:
    name: str
    value: Any
    label: Label


def _integrity_below(v: str, label: Label, env: Env) -> Result:
    ok = label.integrity < env.lattice.integ(v)
    return ok, f"integrity {label.integrity} is {'' if ok else 'not '}below {v}"


def _integrity_at_least(v: str, label: Label, env: Env) -> Result:
    ok = label.integrity >= env.lattice.integ(v)
    return ok, f"integrity {label.integrity} is {'' if ok else 'not '}at least {v}"


def _conf_above(v: str, label: Label, env: Env) -> Result:
    ok = label.confidentiality > env.lattice.conf(v)
    return ok, f"confidentiality {label.confidentiality} is {'' if ok else 'not '}above {v}"


def _conf_at_least(v: str, label: Label, env: Env) -> Result:
    ok = label.confidentiality >= env.lattice.conf(v)
    return ok, f"confidentiality {label.confidentiality} is {'' if ok else 'not '}at least {v}"


def _conf_at_most(v: str, label: Label, env: Env) -> Result:
    ok = label.confidentiality <= env.lattice.conf(v)
    return ok, f"confidentiality {label.confidentiality} is {'' if ok else 'not '}at most {v}"


def _sources_match(v: str | list[str], label: Label, env: Env) -> Result:
    pats = as_list(v)
    hits = sorted(s for s in label.sources if matches_any(pats, s))
    if hits:
        return True, f"sources {', '.join(hits)} match {', '.join(pats)}"
    return False, f"no source matches {', '.join(pats)}"


def _categories_any(v: list[str], label: Label, env: Env) -> Result:
    hits = sorted(label.categories & set(v))
    return bool(hits), (f"has categories {', '.join(hits)}" if hits else f"none of {v}")


def _categories_all(v: list[str], label: Label, env: Env) -> Result:
    missing = sorted(set(v) - label.categories)
    return not missing, (f"has all of {v}" if not missing else f"lacks {', '.join(missing)}")


def _flows(target: str, label: Label, env: Env, negate: bool) -> Result:
    check = env.clearances.get(target)
    if check is None:
        return False, f"no {target.replace('_', ' ')} applies here"
    ok, why = check(label)
    return (not ok if negate else ok), why


def _any_of(v: list[LabelCondition], label: Label, env: Env) -> Result:
    whys = []
    for sub in v:
        ok, why = check_label(sub, label, env)
        if ok:
            return True, why
        whys.append(why)
    return False, "none of: " + " | ".join(whys)


def _none_of(v: list[LabelCondition], label: Label, env: Env) -> Result:
    for sub in v:
        ok, why = check_label(sub, label, env)
        if ok:
            return False, f"excluded because {why}"
    return True, "no excluded condition holds"


_CHECKS: dict[str, Callable[[Any, Label, Env], Result]] = {
    "integrity_below": _integrity_below,
    "integrity_at_least": _integrity_at_least,
    "confidentiality_above": _conf_above,
    "confidentiality_at_least": _conf_at_least,
    "confidentiality_at_most": _conf_at_most,
    "sources_match": _sources_match,
    "categories_any": _categories_any,
    "categories_all": _categories_all,
    "flows_to": lambda v, label, env: _flows(v, label, env, negate=False),
    "not_flows_to": lambda v, label, env: _flows(v, label, env, negate=True),
    "any_of": _any_of,
    "none_of": _none_of,
}


def check_label(cond: LabelCondition, label: Label, env: Env) -> Result:
    """All given conditions must hold; the first failure explains a non-match."""
    whys: list[str] = []
    for name in type(cond).model_fields:
        value = getattr(cond, name)
        if value is None:
            continue
        ok, why = _CHECKS[name](value, label, env)
        if not ok:
            return False, why
        whys.append(why)
    return True, "; ".join(whys) or "no label condition"


def _elements(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return ["" if v is None else str(v) for v in items]


def check_arg(cond: ArgCondition, arg: Arg, env: Env) -> Result:
    whys: list[str] = []
    if cond.matches is not None:
        pats = as_list(cond.matches)
        hits = [v for v in _elements(arg.value) if matches_any(pats, v)]
        if not hits:
            return False, f"{arg.name} does not match {', '.join(pats)}"
        whys.append(f"{arg.name}={hits[0]!r} matches {', '.join(pats)}")
    if cond.not_matches is not None:
        pats = as_list(cond.not_matches)
        misses = [v for v in _elements(arg.value) if not matches_any(pats, v)]
        if not misses:
            return False, f"{arg.name} matches {', '.join(pats)}"
        whys.append(f"{arg.name}={misses[0]!r} does not match {', '.join(pats)}")
    if cond.when is not None:
        ok, why = check_label(cond.when, arg.label, env)
        if not ok:
            return False, f"{arg.name}: {why}"
        whys.append(f"{arg.name}: {why}")
    return True, "; ".join(whys) or f"{arg.name} is present"


def check_args(
    conds: Mapping[str, ArgCondition], args: Mapping[str, Arg], env: Env
) -> tuple[bool, str, Arg | None]:
    """Each entry must hold for some argument whose name matches its glob.

    Returns the first argument that satisfied a label or value condition, so reasons can
    name the argument that triggered the rule.
    """
    whys: list[str] = []
    culprit: Arg | None = None
    for pattern, cond in conds.items():
        names = [n for n in args if matches(pattern, n)]
        if cond.present is False:
            if names:
                return False, f"argument {names[0]} is present", None
            whys.append(f"no argument {pattern}")
            continue
        if not names:
            return False, f"no argument {pattern}", None
        results = [(args[n], *check_arg(cond, args[n], env)) for n in names]
        hit = next(((a, why) for a, ok, why in results if ok), None)
        if hit is None:
            return False, results[0][2], None
        culprit = culprit or hit[0]
        whys.append(hit[1])
    return True, "; ".join(whys), culprit
