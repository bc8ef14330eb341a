"""Dilemma data: the DailyDilemmas formats, read from a path, and the shipped starter set.

What each source supports:

- the per-action table (``dilemmas_with_detail_by_action*.csv``): two rows per dilemma
  (``to_do``/``not_to_do``), each with its values and their five-theory mapping: forced choice
  AND the value profile.
- ``values.csv``: value -> WVS, MFT, Virtue, Emotion, Maslow. Used where a per-action row has
  no mapping of its own.
- ``dilemma.csv``: situations only, no actions, no values: forced choice between doing and not
  doing what the situation's question asks, but no value profile.
- the starter set shipped in ``evals/data`` (self-written, per-action, values mapped).
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

THEORIES = ("WVS", "MFT", "Virtue", "Emotion", "Maslow")
ActionType = Literal["to_do", "not_to_do"]
ACTION_TYPES: tuple[ActionType, ActionType] = ("to_do", "not_to_do")

# value (lower case) -> {theory: dimension}; a theory is absent when the value has none there.
ValueMap = dict[str, dict[str, str]]

ACTION_TABLE_GLOB = "dilemmas_with_detail_by_action*.csv"


class Action(BaseModel):
    text: str
    values: list[str] = Field(default_factory=list)  # lower case
    consequence: str | None = None


class Dilemma(BaseModel):
    id: str
    situation: str
    to_do: Action
    not_to_do: Action
    theories: ValueMap = Field(default_factory=dict)  # for this dilemma's values
    topic: str | None = None
    source: str = "starter"

    def action(self, kind: ActionType) -> Action:
        return self.to_do if kind == "to_do" else self.not_to_do

    @property
    def has_values(self) -> bool:
        return bool(self.to_do.values or self.not_to_do.values)


class Principle(BaseModel):
    id: str
    text: str
    values: list[str] = Field(default_factory=list)  # the values it promotes, when known
    source: str | None = None
    # where its values come from: the file ("given"), labelgate's lexicon ("lexicon"), none
    values_from: Literal["given", "lexicon"] | None = None


class DataError(ValueError):
    """A data file is missing, or not in the format expected."""


# --------------------------------------------------------------------------- values table


def _clean(cell: Any) -> str | None:
    if cell is None:
        return None
    text = str(cell).strip()
    return None if text == "" or text.lower() == "nan" else text


def load_values(path: str | Path) -> ValueMap:
    """A values -> theories table: a ``value`` column plus one column per theory."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = {c.lower(): c for c in reader.fieldnames or [] if c}
        if "value" not in columns:
            raise DataError(f"{path}: no 'value' column")
        present = [t for t in THEORIES if t.lower() in columns]
        if not present:
            raise DataError(f"{path}: none of the theory columns {THEORIES}")
        mapping: ValueMap = {}
        for row in reader:
            value = _clean(row[columns["value"]])
            if value is None:
                continue
            dims = {t: d for t in present if (d := _clean(row[columns[t.lower()]]))}
            mapping[value.lower()] = dims
    return mapping


# --------------------------------------------------------------------------- per-action table


def parse_list(text: str | None) -> list[str | None]:
    """A Python-literal list as written by pandas (``['a', nan, 'b']``), safely: no eval."""
    if text is None or not text.strip():
        return []
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise DataError(f"not a list literal: {text[:60]!r}") from exc
    if not isinstance(tree, ast.List):
        raise DataError(f"not a list literal: {text[:60]!r}")
    items: list[str | None] = []
    for node in tree.elts:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            items.append(node.value)
        elif (isinstance(node, ast.Name) and node.id == "nan") or (
            isinstance(node, ast.Constant) and node.value is None
        ):
            items.append(None)
        else:
            raise DataError(f"unexpected item in list literal: {ast.dump(node)[:60]}")
    return items


def _is_missing(node: ast.expr) -> bool:
    """pandas writes a missing item as a bare ``nan``; ``None`` means the same."""
    is_nan = isinstance(node, ast.Name) and node.id == "nan"
    return is_nan or (isinstance(node, ast.Constant) and node.value is None)


def _row_theories(row: dict[str, str], names: list[str]) -> ValueMap:
    """The per-row mapping: the theory columns are lists aligned with ``values_names``."""
    mapping: ValueMap = {name: {} for name in names}
    for theory in THEORIES:
        column = parse_list(row.get(theory.lower()))
        if column and len(column) != len(names):
            raise DataError(
                f"dilemma {row.get('idx')}: {theory} has {len(column)} items for "
                f"{len(names)} values"
            )
        for name, dim in zip(names, column, strict=False):
            if dim := _clean(dim):
                mapping[name][theory] = dim
    return mapping


def load_action_table(path: str | Path, values: ValueMap | None = None) -> list[Dilemma]:
    """The per-action format: one row per (dilemma, action_type)."""
    rows_by_id: dict[str, dict[str, dict[str, str]]] = {}
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"idx", "dilemma_situation", "action_type", "action", "values_names"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            kind = row["action_type"].strip()
            if kind not in ACTION_TYPES:
                raise DataError(f"{path}: unknown action_type {kind!r}")
            rows_by_id.setdefault(row["idx"].strip(), {})[kind] = row
    dilemmas = []
    for idx, pair in rows_by_id.items():
        if set(pair) != set(ACTION_TYPES):
            raise DataError(f"{path}: dilemma {idx} lacks one of {ACTION_TYPES}")
        dilemmas.append(_dilemma_from_rows(idx, pair, values or {}))
    return dilemmas


def _dilemma_from_rows(idx: str, pair: dict[str, dict[str, str]], values: ValueMap) -> Dilemma:
    actions: dict[str, Action] = {}
    theories: ValueMap = {}
    for kind, row in pair.items():
        names = [n.lower() for n in parse_list(row["values_names"]) if n]
        own = _row_theories(row, names)
        for name in names:
            # The row's own mapping wins; the values table fills a row that has none.
            theories[name] = own.get(name) or values.get(name, {})
        actions[kind] = Action(
            text=row["action"].strip(),
            values=names,
            consequence=_clean(row.get("negative_consequence")),
        )
    first = pair["to_do"]
    return Dilemma(
        id=f"dd{idx}",
        situation=first["dilemma_situation"].strip(),
        to_do=actions["to_do"],
        not_to_do=actions["not_to_do"],
        theories=theories,
        topic=_clean(first.get("topic_group")),
        source="dailydilemmas-actions",
    )


# --------------------------------------------------------------------------- situations only

_QUESTION = re.compile(r"([^.?!]*\?)\s*$")


def situation_question(situation: str) -> str:
    """The closing yes/no question of a situation (the whole text when there is none)."""
    match = _QUESTION.search(situation.strip())
    return match.group(1).strip() if match else situation.strip()


def load_situations(path: str | Path) -> list[Dilemma]:
    """``dilemma.csv``: actions are derived from the closing question; no values."""
    dilemmas = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "dilemma_situation" not in (reader.fieldnames or []):
            raise DataError(f"{path}: no 'dilemma_situation' column")
        for i, row in enumerate(reader):
            situation = row["dilemma_situation"].strip()
            question = situation_question(situation)
            dilemmas.append(
                Dilemma(
                    id=f"dd{_clean(row.get('idx')) or i}",
                    situation=situation,
                    to_do=Action(text=f"Yes, do it ({question})"),
                    not_to_do=Action(text=f"No, do not do it ({question})"),
                    source="dailydilemmas-situations",
                )
            )
    return dilemmas


# --------------------------------------------------------------------------- starter set


DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # shipped with the package


def _data_file(name: str) -> Path:
    return DATA_DIR / name


def load_starter() -> list[Dilemma]:
    values = load_values(_data_file("values_starter.csv"))
    raw = yaml.safe_load(_data_file("dilemmas_starter.yaml").read_text(encoding="utf-8"))
    return [_starter_dilemma(item, values) for item in raw["dilemmas"]]


def _starter_dilemma(item: dict[str, Any], values: ValueMap) -> Dilemma:
    actions = {
        kind: Action(text=item[kind]["action"], values=[v.lower() for v in item[kind]["values"]])
        for kind in ACTION_TYPES
    }
    names = actions["to_do"].values + actions["not_to_do"].values
    unknown = sorted(n for n in names if n not in values)
    if unknown:
        raise DataError(f"starter dilemma {item['id']}: values not in the values table: {unknown}")
    return Dilemma(
        id=item["id"],
        situation=item["situation"],
        to_do=actions["to_do"],
        not_to_do=actions["not_to_do"],
        theories={n: values[n] for n in names},
        topic=item.get("topic"),
        source="starter",
    )


# value -> keywords; see the file's header for the rule
Lexicon = dict[str, list[str]]


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    path = Path(path) if path else _data_file("principle_values.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(f"{path}: expected a mapping of value -> list of keywords")
    return {str(k).lower(): [str(w).lower() for w in v] for k, v in raw.items()}


def _keyword(word: str) -> re.Pattern[str]:
    stem = re.escape(word.rstrip("*")).replace(r"\ ", r"\s+")
    tail = r"[\w-]*" if word.endswith("*") else ""
    return re.compile(rf"(?<!\w){stem}{tail}(?!\w)", re.IGNORECASE)


def principle_values(text: str, lexicon: Lexicon) -> list[str]:
    """The values a principle's text promotes by the lexicon, in the lexicon's order."""
    return [
        value for value, words in lexicon.items() if any(_keyword(w).search(text) for w in words)
    ]


def load_principles(path: str | Path | None = None) -> list[Principle]:
    """Steering principles: the starter YAML by default, or a CSV with a ``principle`` column
    (the DailyDilemmas ``principle_*.csv``), or a YAML list like the starter's. A principle
    without values of its own gets those of labelgate's lexicon (``principle_values.yaml``)."""
    if path is None:
        path = _data_file("principles_starter.yaml")
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        items = raw["principles"] if isinstance(raw, dict) else raw
        found = [Principle.model_validate(p) for p in items]
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "principle" not in (reader.fieldnames or []):
                raise DataError(f"{path}: no 'principle' column")
            found = [
                Principle(
                    id=f"p{i + 1}",
                    text=row["principle"].strip(),
                    source=_clean(row.get("source")),
                )
                for i, row in enumerate(reader)
                if _clean(row["principle"])
            ]
    lexicon = load_lexicon()
    return [_with_values(p, lexicon) for p in found]


def _with_values(p: Principle, lexicon: Lexicon) -> Principle:
    if p.values:
        return p.model_copy(update={"values_from": "given"})
    mapped = principle_values(p.text, lexicon)
    return p.model_copy(update={"values": mapped, "values_from": "lexicon" if mapped else None})


# --------------------------------------------------------------------------- from a path

SourceFormat = Literal["auto", "actions", "situations"]


def load_dilemmas(path: str | Path | None, fmt: SourceFormat = "auto") -> list[Dilemma]:
    """Dilemmas from a file or a DailyDilemmas directory; the starter set when ``path`` is None.

    In a directory, ``auto`` prefers the per-action table (it carries values) and falls back
    to ``dilemma.csv``; ``values.csv`` beside them fills missing value mappings.
    """
    if path is None:
        return load_starter()
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file or directory: {path}")
    if path.is_file():
        return _load_file(path, fmt, _values_beside(path.parent))
    tables = sorted(path.glob(ACTION_TABLE_GLOB))
    situations = path / "dilemma.csv"
    if fmt in ("auto", "actions") and tables:
        values = _values_beside(path)
        return [d for table in tables for d in load_action_table(table, values)]
    if fmt in ("auto", "situations") and situations.exists():
        return load_situations(situations)
    raise DataError(f"{path}: no {fmt} dilemma file ({ACTION_TABLE_GLOB} or dilemma.csv)")


def _values_beside(folder: Path) -> ValueMap:
    table = folder / "values.csv"
    return load_values(table) if table.exists() else {}


def _load_file(path: Path, fmt: SourceFormat, values: ValueMap) -> list[Dilemma]:
    with path.open(newline="", encoding="utf-8") as fh:
        header = set(next(csv.reader(fh), []))
    if fmt == "actions" or (fmt == "auto" and "action_type" in header):
        return load_action_table(path, values)
    return load_situations(path)


def all_values(dilemmas: Iterable[Dilemma]) -> set[str]:
    return {v for d in dilemmas for kind in ACTION_TYPES for v in d.action(kind).values}
