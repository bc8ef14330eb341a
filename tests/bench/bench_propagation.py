"""Benchmark the label propagators with the real local model (SmolLM2-135M via llama.cpp).

    python tests/bench/bench_propagation.py [--limit N] [--families rag,agent,multi,subst]
        [--propagators a,b] [--max-tokens 32]

Cases come from tests/bench/data/propagation_cases.yaml (``rag-*``: questions over retrieved
documents; ``agent-*``: one-step agent traces), propagation_agent_traces.yaml (``multi-*``:
multi-step agent traces whose context holds several labeled tool results, the next step using
one or two) and propagation_substitution.yaml (``subst-*``: a trusted record and an untrusted
message stating different values of one thing). Each family is reported separately. For every
case: the model answers with the full context (temperature 0, seed 0); ground-truth influence
is measured by leave-one-out (an input is influential when the answer without it is not
similar to the full answer, by the same similarity the propagators use, *and* states the same
values exactly: ``guard.values``); then each propagator labels the answer. Reported per
propagator: the share of cases whose label is strictly more permissive than the join; unsound
labels, counted two ways: "LOO" (an influential input's label omitted) and "values" (a value
of the output that an input the label drops holds, as written, re-encoded or in part, and no
input the label keeps holds: the issue-19 rule), and "either"; fallbacks, model calls and
seconds per case; and how often measured influence agrees with the relevance the case was
designed with.

Model answers are memoised by (messages, parameters): decoding is greedy, so the ground truth
and every propagator asking the same sub-context get the same answer, and the wall time stays
bounded. A memo hit is *charged* the seconds the original call took, so a propagator's s/case
is what it would cost run alone; its model-call count is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from labelgate_tree import import_path

sys.path.insert(0, import_path())  # this tree as labelgate, not an installed one

from labelgate.guard.items import ItemKind, LabeledItem, LLMCall
from labelgate.guard.labels import Label, Lattice
from labelgate.guard.models import ChatModel, LocalModel, render_messages
from labelgate.guard.propagation import PROPAGATORS, get_propagator, join_label
from labelgate.guard.propagation.base import requery_params
from labelgate.guard.similarity import Similarity
from labelgate.guard.values import index, output_values, same_values

DATA_DIR = Path(__file__).parent / "data"
DATA_FILES = (
    DATA_DIR / "propagation_cases.yaml",
    DATA_DIR / "propagation_agent_traces.yaml",
    DATA_DIR / "propagation_substitution.yaml",
)
FAMILIES = ("rag", "agent", "multi", "subst")
LAT = Lattice()


class CachedModel:
    """Memoises a deterministic model's answers and charges each hit the original seconds."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self._memo: dict[str, tuple[Any, float]] = {}
        self.charged = 0.0  # model seconds as if every call had been made
        self.spent = 0.0  # model seconds really spent
        self.real_calls = 0

    async def chat(self, messages: Any, **params: Any) -> Any:
        key = json.dumps([list(messages), params], sort_keys=True, default=str)
        if key not in self._memo:
            t0 = time.perf_counter()
            result = await self.inner.chat(messages, **params)
            took = time.perf_counter() - t0
            self._memo[key] = (result, took)
            self.spent += took
            self.real_calls += 1
        result, took = self._memo[key]
        self.charged += took
        return result


@dataclass
class Case:
    id: str
    call: LLMCall
    relevant: set[str]

    @property
    def family(self) -> str:
        return self.id.split("-")[0]


@dataclass
class Tally:
    cases: int = 0
    permissive: int = 0
    unsound: int = 0
    unsound_values: int = 0  # a value of the output only a dropped input holds
    unsound_any: int = 0
    fell_back: int = 0
    calls: int = 0
    seconds: float = 0.0
    by_family: dict[str, list[int]] = field(default_factory=dict)  # family -> [n, permissive]


def parse_label(text: str | None, categories: list[str] | None = None) -> Label:
    """``"confidential/untrusted rag:hr,web:x"`` (+ categories) to a Label; no text: bottom."""
    if not text:
        return LAT.bottom
    levels, _, sources = text.partition(" ")
    conf, integ = levels.split("/")
    srcs = [s for s in sources.split(",") if s]
    return LAT.label(conf, integ, sources=srcs, categories=categories or ())


def load_cases(path: Path) -> list[Case]:
    """A case file: a list of cases, or a mapping with ``cases`` and default ``params``."""
    data = yaml.safe_load(path.read_text())
    defaults = data.get("params", {}) if isinstance(data, dict) else {}
    cases = []
    for raw in data["cases"] if isinstance(data, dict) else data:
        items, relevant = [], set()
        for n, spec in enumerate(raw["items"]):
            label = parse_label(spec.get("label"), spec.get("categories"))
            item = LabeledItem(
                text=spec["text"],
                label=label,
                kind=ItemKind.TOOL_RESULT if spec["role"] == "tool" else ItemKind.MESSAGE_PART,
                role=spec["role"],
                name=spec.get("name"),
                id=f"{raw['id']}:{n}",
            )
            items.append(item)
            if spec.get("relevant"):
                relevant.add(item.id)
        params = {**defaults, **raw.get("params", {})}
        call = LLMCall(items=items, model="local/smollm2", params=params)
        cases.append(Case(raw["id"], call, relevant))
    return cases


def select(families: list[str], limit: int) -> list[Case]:
    """The first ``limit`` cases (0: all) of each family asked for, in file order."""
    every = [c for path in DATA_FILES for c in load_cases(path)]
    chosen = []
    for fam in families:
        members = [c for c in every if c.family == fam]
        chosen += members[: limit or None]
    return chosen


async def ask(model: ChatModel, call: LLMCall, items: list[LabeledItem]) -> str:
    """The same decoding parameters the propagators' re-queries use (so answers match)."""
    result = await model.chat(render_messages(items), **requery_params(call.params))
    return result.text


def same(sim: Similarity, a: str, b: str) -> bool:
    """The ground truth's "same answer": the similarity, and the same values exactly (checked
    here too, so a tree whose Similarity ignores values is measured by the same yardstick)."""
    return sim.same(a, b) and same_values(a, b)


async def influence(model: ChatModel, case: Case, output: str, sim: Similarity) -> set[str]:
    """Leave-one-out ground truth: the non-bottom inputs whose removal changes the answer."""
    found = set()
    for item in case.call.items:
        if item.label.flows_to(LAT.bottom):
            continue
        rest = [i for i in case.call.items if i.id != item.id]
        if not same(sim, await ask(model, case.call, rest), output):
            found.add(item.id)
    return found


def value_unsound(call: LLMCall, output: str, label: Label) -> list[str]:
    """Values of the output that an input the label drops holds (as written, re-encoded or in
    part) and no input the label keeps holds as written: the issue-19 soundness rule."""
    kept = [i for i in call.items if i.label.flows_to(label)]
    dropped = [i for i in call.items if not i.label.flows_to(label)]
    return [
        v.raw
        for v in output_values(output)
        if not any(index(i.text).strictly(v) for i in kept)
        and any(index(i.text).broadly(v) for i in dropped)
    ]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    families = args.families.split(",") if args.families else list(FAMILIES)
    cases = select(families, args.limit)
    names = args.propagators.split(",") if args.propagators else list(PROPAGATORS)
    sim = Similarity(metric=args.metric, threshold=args.threshold, tool_calls=args.tool_calls)
    model = CachedModel(LocalModel())
    tallies = {n: Tally() for n in names}
    fam_stats = {f: {"cases": 0, "ceiling": 0, "agree": 0, "items": 0} for f in families}
    rows = []
    started = time.perf_counter()
    for case in cases:
        case.call.params = {"max_tokens": args.max_tokens, **case.call.params}
        output = await ask(model, case.call, case.call.items)
        truth = await influence(model, case, output, sim)
        join = join_label(case.call, LAT)
        labeled = [i for i in case.call.items if not i.label.flows_to(LAT.bottom)]
        floor = LAT.join_all([LAT.bottom, *(i.label for i in labeled if i.id in truth)])
        fs = fam_stats[case.family]
        fs["cases"] += 1
        fs["ceiling"] += floor != join  # some sound label is more permissive than the join
        fs["agree"] += sum((i.id in truth) == (i.id in case.relevant) for i in labeled)
        fs["items"] += len(labeled)
        row: dict[str, Any] = {"id": case.id, "output": output, "influential": sorted(truth)}
        for name in names:
            prop = get_propagator(name, model=model, **_opts(name, sim))
            charged, spent = model.charged, model.spent
            result = await prop.propagate(case.call, output, LAT)
            # What the propagator would have cost alone: its own time, minus the model time
            # really spent, plus the model time of every answer it asked for (memo or not).
            seconds = result.seconds - (model.spent - spent) + (model.charged - charged)
            unsound = any(
                not i.label.flows_to(result.label) for i in case.call.items if i.id in truth
            )
            by_value = value_unsound(case.call, output, result.label)
            tally = tallies[name]
            tally.unsound_values += bool(by_value)
            tally.unsound_any += unsound or bool(by_value)
            _count(tally, case, result.more_permissive_than(join), unsound, result, seconds)
            row[name] = {
                "label": result.label.short(),
                "fell_back": result.fell_back,
                "unsound": unsound,
                "unsound_values": by_value,
                "calls": result.model_calls,
                "reason": result.reason,
            }
        rows.append(row)
        print(
            f"{case.id}: {output[:70]!r} influential={len(truth)}/{len(labeled)} "
            + " ".join(
                f"{n}={'P' if row[n]['label'] != join.short() else '-'}"
                f"{'!' if row[n]['unsound'] else ''}{'$' if row[n]['unsound_values'] else ''}"
                for n in names
            ),
            flush=True,
        )
    return {
        "cases": len(cases),
        "similarity": sim.describe() + " (ground truth: and the same values)",
        "max_tokens": args.max_tokens,
        "families": fam_stats,
        "model_calls_real": model.real_calls,
        "wall_seconds": time.perf_counter() - started,
        "tallies": {n: t.__dict__ for n, t in tallies.items()},
        "rows": rows,
    }


def _opts(name: str, sim: Similarity) -> dict[str, Any]:
    return {"similarity": sim} if name == "counterfactual" else {}


def _count(
    t: Tally, case: Case, permissive: bool, unsound: bool, result: Any, seconds: float
) -> None:
    t.cases += 1
    t.permissive += permissive
    t.unsound += unsound
    t.fell_back += result.fell_back
    t.calls += result.model_calls
    t.seconds += seconds
    fam = t.by_family.setdefault(case.family, [0, 0, 0])
    fam[0] += 1
    fam[1] += permissive
    fam[2] += unsound


def machine() -> str:
    cpu = (
        subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True)
        .stdout.split(":")[-1]
        .strip()
    )
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    import os

    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, {platform.python_version()}"
    )


def report(res: dict[str, Any]) -> str:
    fams = res["families"]
    lines = [
        f"Machine: {machine()}",
        f"Cases: {res['cases']}; similarity {res['similarity']}; max_tokens {res['max_tokens']}"
        f" (unless a case sets it); wall time {res['wall_seconds']:.0f} s;"
        f" {res['model_calls_real']} distinct model calls",
        "",
        "| family | cases | a sound label below the join exists | LOO influence = designed |",
        "|---|---|---|---|",
    ]
    for fam, f in fams.items():
        lines.append(
            f"| {fam} | {f['cases']} | {f['ceiling']}/{f['cases']} | "
            f"{f['agree'] / max(f['items'], 1):.0%} of {f['items']} labeled inputs |"
        )
    head = " | ".join(f"{fam}: perm. / unsound" for fam in fams)
    lines += [
        "",
        f"| propagator | more permissive than join | unsound (LOO) | unsound (values) |"
        f" unsound (either) | {head} | fell back | model calls/case | s/case |",
        "|---|---|---|---|---|" + "---|" * len(fams) + "---|---|---|",
    ]
    for name, t in res["tallies"].items():
        n = max(t["cases"], 1)
        per = " | ".join(
            "{1}/{0} / {2}".format(*t["by_family"].get(fam, [0, 0, 0])) for fam in fams
        )
        lines.append(
            f"| {name} | {t['permissive'] / n:.0%} ({t['permissive']}/{t['cases']}) | "
            f"{t['unsound'] / n:.0%} ({t['unsound']}) | {t['unsound_values']} | "
            f"{t['unsound_any']} | {per} | {t['fell_back']} | "
            f"{t['calls'] / n:.1f} | {t['seconds'] / n:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N of each family")
    parser.add_argument("--families", default="", help=f"comma list of {','.join(FAMILIES)}")
    parser.add_argument("--propagators", default="", help=f"comma list of {','.join(PROPAGATORS)}")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--metric",
        default="rouge_l",
        choices=["rouge_l", "rouge_l_recall", "token_f1", "embedding"],
    )
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument(
        "--tool-calls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare call-shaped answers by tool name + argument values (default on)",
    )
    parser.add_argument("--json", type=Path, help="write every case's result here")
    args = parser.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print()
    print(report(res))


if __name__ == "__main__":
    main()
