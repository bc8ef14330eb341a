"""Benchmark the label propagators with the real local model (SmolLM2-135M via llama.cpp).

    python tests/bench/bench_propagation.py [--limit N] [--propagators a,b] [--max-tokens 32]

For every case of tests/bench/data/propagation_cases.yaml: the model answers with the full
context (temperature 0, seed 0); ground-truth influence is measured by leave-one-out (an input
is influential when the answer without it is not similar to the full answer, by the same
similarity the propagators use); then each propagator labels the answer. Reported per
propagator: the share of cases whose label is strictly more permissive than the join, the share
of unsound labels (an influential input's label omitted), fallbacks, model calls and seconds
per case; and how often measured influence agrees with the relevance the case was designed
with.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from guard.items import ItemKind, LabeledItem, LLMCall  # noqa: E402
from guard.labels import Label, Lattice  # noqa: E402
from guard.models import ChatModel, LocalModel, render_messages  # noqa: E402
from guard.propagation import PROPAGATORS, get_propagator, join_label  # noqa: E402
from guard.similarity import Similarity  # noqa: E402

DATA = Path(__file__).parent / "data" / "propagation_cases.yaml"
LAT = Lattice()


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
    fell_back: int = 0
    calls: int = 0
    seconds: float = 0.0
    by_family: dict[str, list[int]] = field(default_factory=dict)  # family -> [n, permissive]


def parse_label(text: str | None) -> Label:
    """``"confidential/untrusted rag:hr,web:x"`` to a Label; no text is the bottom."""
    if not text:
        return LAT.bottom
    levels, _, sources = text.partition(" ")
    conf, integ = levels.split("/")
    return LAT.label(conf, integ, sources=[s for s in sources.split(",") if s])


def load_cases(path: Path = DATA) -> list[Case]:
    cases = []
    for raw in yaml.safe_load(path.read_text()):
        items, relevant = [], set()
        for n, spec in enumerate(raw["items"]):
            item = LabeledItem(
                text=spec["text"],
                label=parse_label(spec.get("label")),
                kind=ItemKind.TOOL_RESULT if spec["role"] == "tool" else ItemKind.MESSAGE_PART,
                role=spec["role"],
                name=spec.get("name"),
                id=f"{raw['id']}:{n}",
            )
            items.append(item)
            if spec.get("relevant"):
                relevant.add(item.id)
        cases.append(Case(raw["id"], LLMCall(items=items, model="local/smollm2"), relevant))
    return cases


async def ask(model: ChatModel, items: list[LabeledItem], max_tokens: int) -> str:
    result = await model.chat(
        render_messages(items), temperature=0.0, seed=0, max_tokens=max_tokens
    )
    return result.text


async def influence(
    model: ChatModel, case: Case, output: str, sim: Similarity, max_tokens: int
) -> set[str]:
    """Leave-one-out ground truth: the non-bottom inputs whose removal changes the answer."""
    found = set()
    for item in case.call.items:
        if item.label.flows_to(LAT.bottom):
            continue
        rest = [i for i in case.call.items if i.id != item.id]
        if not sim.same(await ask(model, rest, max_tokens), output):
            found.add(item.id)
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = load_cases()[: args.limit or None]
    names = args.propagators.split(",") if args.propagators else list(PROPAGATORS)
    sim = Similarity(metric=args.metric, threshold=args.threshold)
    model = LocalModel()
    tallies = {n: Tally() for n in names}
    agree = total_items = 0
    rows = []
    started = time.perf_counter()
    for case in cases:
        case.call.params = {"max_tokens": args.max_tokens}
        output = await ask(model, case.call.items, args.max_tokens)
        truth = await influence(model, case, output, sim, args.max_tokens)
        join = join_label(case.call, LAT)
        labeled = [i for i in case.call.items if not i.label.flows_to(LAT.bottom)]
        agree += sum((i.id in truth) == (i.id in case.relevant) for i in labeled)
        total_items += len(labeled)
        row: dict[str, Any] = {"id": case.id, "output": output, "influential": sorted(truth)}
        for name in names:
            prop = get_propagator(name, model=model, **_opts(name, sim))
            result = await prop.propagate(case.call, output, LAT)
            unsound = any(
                not i.label.flows_to(result.label) for i in case.call.items if i.id in truth
            )
            _count(tallies[name], case, result.more_permissive_than(join), unsound, result)
            row[name] = {
                "label": result.label.short(),
                "fell_back": result.fell_back,
                "unsound": unsound,
                "calls": result.model_calls,
                "reason": result.reason,
            }
        rows.append(row)
        print(f"{case.id}: {output[:60]!r} influential={len(truth)}/{len(labeled)}", flush=True)
    return {
        "cases": len(cases),
        "similarity": sim.describe(),
        "max_tokens": args.max_tokens,
        "agreement": agree / max(total_items, 1),
        "items": total_items,
        "wall_seconds": time.perf_counter() - started,
        "tallies": {n: t.__dict__ for n, t in tallies.items()},
        "rows": rows,
    }


def _opts(name: str, sim: Similarity) -> dict[str, Any]:
    return {"similarity": sim} if name == "counterfactual" else {}


def _count(t: Tally, case: Case, permissive: bool, unsound: bool, result: Any) -> None:
    t.cases += 1
    t.permissive += permissive
    t.unsound += unsound
    t.fell_back += result.fell_back
    t.calls += result.model_calls
    t.seconds += result.seconds
    fam = t.by_family.setdefault(case.family, [0, 0])
    fam[0] += 1
    fam[1] += permissive


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
    lines = [
        f"Machine: {machine()}",
        f"Cases: {res['cases']}; similarity {res['similarity']}; max_tokens {res['max_tokens']};"
        f" wall time {res['wall_seconds']:.0f} s",
        f"Leave-one-out influence agrees with designed relevance on "
        f"{res['agreement']:.0%} of {res['items']} labeled inputs",
        "",
        "| propagator | more permissive than join | agent cases | RAG cases | unsound |"
        " fell back | model calls/case | s/case |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t in res["tallies"].items():
        n = max(t["cases"], 1)
        fam = {k: f"{v[1]}/{v[0]}" for k, v in t["by_family"].items()}
        lines.append(
            f"| {name} | {t['permissive'] / n:.0%} ({t['permissive']}/{t['cases']}) | "
            f"{fam.get('agent', '-')} | {fam.get('rag', '-')} | "
            f"{t['unsound'] / n:.0%} ({t['unsound']}) | {t['fell_back']} | "
            f"{t['calls'] / n:.1f} | {t['seconds'] / n:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N cases")
    parser.add_argument("--propagators", default="", help=f"comma list of {','.join(PROPAGATORS)}")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--metric",
        default="rouge_l",
        choices=["rouge_l", "rouge_l_recall", "token_f1", "embedding"],
    )
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--json", type=Path, help="write every case's result here")
    args = parser.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print()
    print(report(res))


if __name__ == "__main__":
    main()
