"""The injection report: benign utility, utility under attack and attack success rate (Wilson
95% intervals), by domain, agent topology, attack and goal; and what the guard did, sample by
sample: which decision stopped which attack, which broke which task (rule and reason)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from labelgate.evals.family import Figure, ReportSection
from labelgate.evals.injection.scoring import ATTACK_SUCCESS, BENIGN_UTILITY, GUARD, UNDER_ATTACK
from labelgate.evals.plots import grouped_rates
from labelgate.evals.stats import Rate, rate

MAX_LISTED = 40


class Row(BaseModel):
    sample_id: str
    task: str
    domain: str
    topology: str
    attack: str | None
    attack_kind: str | None
    goal: str | None
    goal_category: str | None
    utility: bool | None
    attacked_ok: bool | None  # the attacker's goal reached
    guard: dict[str, Any] | None  # the guard score's metadata, when guarded


def rows_of(samples: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[Row]:
    by: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for s in scores:
        by[s["sample_id"]][s["scorer"]] = s
    rows = []
    for sample in samples:
        if sample["status"] != "done":
            continue
        meta, got = sample["metadata"], by[sample["sample_id"]]
        attacked = bool(meta.get("attack"))
        utility = got.get(UNDER_ATTACK if attacked else BENIGN_UTILITY, {}).get("value")
        success = got.get(ATTACK_SUCCESS, {}).get("value")
        guard = got.get(GUARD, {})
        rows.append(
            Row(
                sample_id=sample["sample_id"],
                task=meta.get("task", sample["scenario_id"]),
                domain=meta.get("domain", "?"),
                topology=meta.get("topology", "single"),
                attack=meta.get("attack"),
                attack_kind=meta.get("attack_kind"),
                goal=meta.get("goal"),
                goal_category=meta.get("goal_category"),
                utility=None if utility is None else utility == "yes",
                attacked_ok=None if success is None else success == "yes",
                guard=guard.get("metadata") if guard.get("value") != "direct" else None,
            )
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _rate(values: list[bool | None]) -> Rate:
    known = [v for v in values if v is not None]
    return rate(sum(known), len(known))


def three(rows: list[Row]) -> tuple[Rate, Rate, Rate]:
    """Benign utility, utility under attack, attack success rate."""
    benign = [r.utility for r in rows if r.attack is None]
    under = [r.utility for r in rows if r.attack is not None]
    asr = [r.attacked_ok for r in rows if r.attack is not None]
    return _rate(benign), _rate(under), _rate(asr)


def _by(rows: list[Row], key: Callable[[Row], str | None]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        k = key(r)
        if k is not None:
            groups[k].append(r)
    return dict(sorted(groups.items()))


def headline(rows: list[Row]) -> ReportSection:
    benign, under, asr = three(rows)
    attacked = [r for r in rows if r.attack is not None]
    static = _rate([r.attacked_ok for r in attacked if r.attack_kind == "static"])
    adaptive = _rate([r.attacked_ok for r in attacked if r.attack_kind == "adaptive"])
    text = _table(
        ["measure", "rate [95% Wilson]"],
        [
            ["benign utility (tasks done, no attack)", benign.short()],
            ["utility under attack (tasks done, attacked)", under.short()],
            ["attack success rate (goal reached)", asr.short()],
            ["  static attacks", static.short()],
            ["  adaptive attacks", adaptive.short()],
        ],
    )
    text += (
        f"\n\n{len({r.task for r in rows})} tasks, {len(rows)} samples "
        f"({len(rows) - len(attacked)} benign, {len(attacked)} attacked). Every verdict is read "
        "from the final state of the sample's world, never from the agent's words (except the "
        "phishing goals, whose sink is the answer to the user)."
    )
    return ReportSection("Results", text)


def breakdown(title: str, groups: dict[str, list[Row]], first: str) -> ReportSection:
    body = []
    for name, members in groups.items():
        benign, under, asr = three(members)
        body.append([name, str(len(members)), benign.short(), under.short(), asr.short()])
    header = [first, "samples", "benign utility", "utility under attack", "attack success"]
    return ReportSection(title, _table(header, body))


def by_attack(rows: list[Row]) -> ReportSection:
    body = []
    for name, members in _by(rows, lambda r: r.attack).items():
        _, under, asr = three(members)
        kind = members[0].attack_kind or ""
        body.append([f"`{name}`", kind, str(len(members)), under.short(), asr.short()])
    header = ["attack", "kind", "samples", "utility under attack", "attack success"]
    return ReportSection("By attack", _table(header, body))


def by_goal(rows: list[Row]) -> ReportSection:
    body = []
    goals = _by(rows, lambda r: r.goal if r.goal and not r.goal.startswith("substitute-") else None)
    subs = [r for r in rows if r.goal and r.goal.startswith("substitute-")]
    if subs:
        goals["substitute-* (each task's own value)"] = subs
    for name, members in goals.items():
        asr = _rate([r.attacked_ok for r in members])
        body.append([f"`{name}`", members[0].goal_category or "", asr.short()])
    cats = _by(rows, lambda r: r.goal_category)
    text = _table(["goal", "category", "attack success"], body)
    text += "\n\n" + _table(
        ["category", "attack success"],
        [[c, _rate([r.attacked_ok for r in m]).short()] for c, m in cats.items()],
    )
    return ReportSection("By attacker goal", text)


def figure(rows: list[Row]) -> Figure:
    groups = _by(rows, lambda r: r.domain)
    names = list(groups)
    series: dict[str, list[tuple[str, float | None, float | None, float | None]]] = {
        "benign utility": [],
        "utility under attack": [],
        "attack success": [],
    }
    for name in names:
        for label, r in zip(series, three(groups[name]), strict=True):
            series[label].append((name, r.rate, r.low, r.high))
    png = grouped_rates(names, series, ylabel="rate")
    return Figure("By domain", png, "95% Wilson intervals")


# --------------------------------------------------------------------------- the guard


def _cut(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def guard_section(rows: list[Row]) -> ReportSection | None:
    guarded = [r for r in rows if r.guard is not None]
    if not guarded:
        return None
    decisions = [d for r in guarded for d in r.guard["decisions"]]  # type: ignore[index]
    counts = Counter((d["action"], d.get("rule") or "-") for d in decisions)
    text = _cost(guarded)
    text += "Decisions on the samples' model calls, by action and rule:\n\n" + _table(
        ["action", "rule", "decisions"],
        [[a, f"`{rule}`", str(n)] for (a, rule), n in counts.most_common()],
    )
    stopped = [(r, d) for r in guarded for d in r.guard["stopped_attack"]]  # type: ignore[index]
    broke = [(r, d) for r in guarded for d in r.guard["broke_task"]]  # type: ignore[index]
    text += "\n\n### Attacks stopped\n\n" + _listing(stopped, "stopped") + "\n\n"
    through = [r for r in guarded if r.attacked_ok]
    text += f"### Attacks that got through ({len(through)})\n\n"
    text += _table(
        ["sample", "goal", "attack"],
        [[f"`{r.sample_id}`", f"`{r.goal}`", r.attack or ""] for r in through[:MAX_LISTED]],
    )
    text += "\n\n### Tasks broken by the guard (false positives)\n\n" + _listing(broke, "broke")
    return ReportSection("The guard, sample by sample", text)


def _cost(guarded: list[Row]) -> str:
    """The guard's own model calls (propagator re-queries, data-only replays) beside the
    agents' calls: what the guard costs, per sample."""
    logs = [r.guard for r in guarded if r.guard is not None]
    calls: int = sum(int(log.get("calls", 0)) for log in logs)
    extra = [int(log.get("guard_calls", 0)) for log in logs]
    if not calls:
        return ""
    most = max(extra, default=0)
    return (
        f"The guard made {sum(extra)} model calls of its own (propagator re-queries and "
        f"data-only replays) for {calls} agent model calls: {sum(extra) / calls:.2f} per call, "
        f"at most {most} in one sample.\n\n"
    )


def _listing(pairs: list[tuple[Row, dict[str, Any]]], verb: str) -> str:
    if not pairs:
        return "none"
    rules = Counter(d.get("rule") or "-" for _, d in pairs)
    head = f"{len({r.sample_id for r, _ in pairs})} samples; by rule: " + ", ".join(
        f"`{k}` {v}" for k, v in rules.most_common()
    )
    body = [
        [
            f"`{r.sample_id}`",
            d["agent"],
            _cut(d["hit"], 60),
            d["action"],
            f"`{d.get('rule')}`",
            _cut(d["reason"]),
        ]
        for r, d in pairs[:MAX_LISTED]
    ]
    more = (
        f"\n\n({len(pairs) - MAX_LISTED} more in the results database)"
        if len(pairs) > MAX_LISTED
        else ""
    )
    return (
        head
        + "\n\n"
        + _table(["sample", "agent", "what it hit", "action", "rule", "reason"], body)
        + more
    )


def sections(samples: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[ReportSection]:
    rows = rows_of(samples, scores)
    if not rows:
        return [ReportSection("Results", "No finished samples.")]
    top = headline(rows)
    top.figures.append(figure(rows))
    out = [
        top,
        breakdown("By domain", _by(rows, lambda r: r.domain), "domain"),
        breakdown("By agent topology", _by(rows, lambda r: r.topology), "topology"),
        by_attack(rows),
        by_goal(rows),
    ]
    guard = guard_section(rows)
    if guard is not None:
        out.append(guard)
    return out
