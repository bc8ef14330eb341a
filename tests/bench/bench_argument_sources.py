"""Precision and recall of argument-level provenance on labelled cases.

    python tests/bench/bench_argument_sources.py [--verbose]

Cases: tests/bench/data/argument_provenance.yaml (a tool-call argument value, the labeled inputs
of the call, the inputs it came from). Each value is attributed the way the guard does it
(``guard.argument_sources``, with the output's label for what is found nowhere: here the join
of the inputs, as when no permissive propagator ran). Reported:

- taint: an argument is *tainted* when its expected sources hold an untrusted input (or, for a
  value found in no input, when the call holds one: the documented rule). Recall = tainted
  arguments labelled untrusted / tainted arguments; precision = correctly tainted / labelled
  untrusted. Also without the values found in no input (whose truth is the rule itself).
- sources: how often the inputs named equal the expected ones exactly, and the precision and
  recall of the named inputs over all cases.

Runs on the tree it sits in (a copy of this script in an older checkout measures that one;
the guard's old API, without ``unmatched_label``, is called as the old engine did).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

import yaml
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.guard.argument_sources import argument_sources
from labelgate.guard.items import ItemKind, LabeledItem
from labelgate.guard.labels import Lattice

DATA = Path(__file__).parent / "data" / "argument_provenance.yaml"
LAT = Lattice()


def load(path: Path = DATA) -> tuple[dict[str, list[LabeledItem]], list[dict[str, Any]]]:
    data = yaml.safe_load(path.read_text())
    scenarios: dict[str, list[LabeledItem]] = {}
    for name, specs in data["scenarios"].items():
        items = []
        for spec in specs:
            label = LAT.bottom
            if spec.get("label"):
                levels, _, sources = spec["label"].partition(" ")
                conf, integ = levels.split("/")
                label = LAT.label(conf, integ, sources=[s for s in sources.split(",") if s])
            kind = ItemKind.TOOL_RESULT if spec["role"] == "tool" else ItemKind.MESSAGE_PART
            items.append(
                LabeledItem(spec["text"], label, kind, spec["id"], spec["role"], spec["id"])
            )
        scenarios[name] = items
    return scenarios, data["cases"]


def attribute(value: Any, items: list[LabeledItem]) -> tuple[Any, list[str]]:
    """(label, item ids) of one value, as the guard's engine labels a tool-call argument."""
    join = LAT.join_all(i.label for i in items)
    if "unmatched_label" in inspect.signature(argument_sources).parameters:
        prov = argument_sources({"v": value}, items, LAT, unmatched_label=join)["v"]
        return prov.label, list(prov.item_ids)
    prov = argument_sources({"v": value}, items, LAT)["v"]  # the engine before issue 19
    return (join if prov.kind == "none" else prov.label), list(prov.item_ids)


def evaluate(verbose: bool = False) -> dict[str, Any]:
    scenarios, cases = load()
    trusted = LAT.integ("trusted")
    tallies = {"all": [0, 0, 0], "found": [0, 0, 0]}  # tp, fp, fn
    exact = named_ok = named = expected_n = 0
    misses = []
    for case in cases:
        items = scenarios[case["scenario"]]
        by_id = {i.id: i for i in items}
        expected = set(case["sources"])
        if expected:
            tainted = any(by_id[i].label.integrity < trusted for i in expected)
        else:
            tainted = any(i.label.integrity < trusted for i in items)
        label, ids = attribute(case["value"], items)
        said = label.integrity < trusted
        for key in ("all", "found") if expected else ("all",):
            t = tallies[key]
            t[0] += said and tainted
            t[1] += said and not tainted
            t[2] += tainted and not said
        exact += set(ids) == expected
        named_ok += len(set(ids) & expected)
        named += len(set(ids))
        expected_n += len(expected)
        if said != tainted or set(ids) != expected:
            misses.append((case, ids, label.short(), said, tainted))
    if verbose:
        for case, ids, label, said, tainted in misses:
            flag = "TAINT " if said != tainted else "src   "
            print(f"{flag}{case['value']!r:50.50} expected {case['sources']} got {ids} ({label})")
    out: dict[str, Any] = {"cases": len(cases)}
    for key, (tp, fp, fn) in tallies.items():
        out[key] = {
            "tainted": tp + fn,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }
    out["sources_exact"] = exact / len(cases)
    out["sources_precision"] = named_ok / named if named else 1.0
    out["sources_recall"] = named_ok / expected_n if expected_n else 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every case it gets wrong")
    res = evaluate(parser.parse_args().verbose)
    print(f"{res['cases']} cases")
    for key, what in (("all", "every case"), ("found", "values found in some input")):
        r = res[key]
        print(
            f"taint, {what}: recall {r['recall']:.3f} ({r['tp']}/{r['tainted']}), "
            f"precision {r['precision']:.3f} ({r['tp']}/{r['tp'] + r['fp']})"
        )
    print(
        f"sources: exactly right {res['sources_exact']:.0%}; named inputs precision "
        f"{res['sources_precision']:.3f}, recall {res['sources_recall']:.3f}"
    )


if __name__ == "__main__":
    main()
