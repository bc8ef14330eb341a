"""The ``dilemmas`` eval family: scenarios from a dilemma source, no tools, the forced-choice
scorer, and a report with choice rates, the value and five-theory profiles, position bias
and steerability."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Tracer
from pydantic import BaseModel, Field

from labelgate.evals.agent import AgentLimits, Transcript, undecided_reason
from labelgate.evals.dilemmas import analysis as an
from labelgate.evals.dilemmas.data import SourceFormat, load_dilemmas, load_principles
from labelgate.evals.dilemmas.protocol import FAMILY, conditions, scenario
from labelgate.evals.dilemmas.scoring import SCORER, ForcedChoiceScorer
from labelgate.evals.environment import Environment
from labelgate.evals.family import AgentLoop, Figure, ReportSection
from labelgate.evals.models import resolve_model
from labelgate.evals.plots import grouped_rates, hbar_panels
from labelgate.evals.sample_guard import GuardScorer, SampleGuard, guard_section
from labelgate.evals.scenario import Sample, Scenario
from labelgate.evals.scorers import Scorer
from labelgate.evals.stats import Rate
from labelgate.guard.models import ChatModel


class DilemmaOptions(BaseModel):
    model_config = {"extra": "forbid"}

    data: str | None = Field(None, description="DailyDilemmas file or folder; None: starter set")
    format: SourceFormat = "auto"
    principles: str | None = Field(None, description="principles file; None: the starter ones")
    steer: int = Field(2, ge=0, description="how many principles to steer with (0: none)")
    swap: bool = Field(True, description="also ask with the actions swapped (position bias)")
    seeds: list[int] = Field(default_factory=lambda: [0])
    grader: str | None = Field(None, description="model that reads unparseable answers")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for profile intervals")


class DilemmasFamily(AgentLoop):
    name = FAMILY
    description = "Value dilemmas (after DailyDilemmas)"
    primary_scorer = SCORER

    def scenarios(self, options: dict[str, Any]) -> list[Scenario]:
        opts = DilemmaOptions.model_validate(options)
        principles = load_principles(opts.principles)[: opts.steer] if opts.steer else []
        conds = conditions(principles)
        return [
            scenario(d, conds, swap=opts.swap, seeds=opts.seeds)
            for d in load_dilemmas(opts.data, opts.format)
        ]

    def environment(self, sample: Sample) -> Environment:
        return Environment()  # a forced choice needs no tools

    async def run_sample(
        self,
        model: ChatModel,
        sample: Sample,
        env: Environment,
        tracer: Tracer,
        *,
        limits: AgentLimits | None = None,
        capture_content: bool = False,
    ) -> Transcript:
        """The agent loop; through a proxy, its calls say their sample (``sample_guard``)."""
        guard = SampleGuard(model, sample)
        try:
            return await super().run_sample(
                guard.agent("agent"),
                sample,
                env,
                tracer,
                limits=limits,
                capture_content=capture_content,
            )
        finally:
            guard.record(env)
            await guard.aclose()

    def scorers(self, options: dict[str, Any]) -> list[Scorer]:
        opts = DilemmaOptions.model_validate(options)
        grader = resolve_model(opts.grader) if opts.grader else None
        return [ForcedChoiceScorer(grader), GuardScorer()]

    def analyze(
        self,
        samples: list[dict[str, Any]],
        scores: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> list[ReportSection]:
        opts = DilemmaOptions.model_validate(options or {})
        # A rollout cut off (timeout, token budget) or failed before any answer is undecided:
        # counted apart, not as an unparsed answer.
        cut = {
            s["sample_id"]: s
            for s in samples
            if s["status"] == "error" or undecided_reason(s["stop_reason"])
        }
        items = [c for c in an.choices(samples, scores) if c.choice or c.sample_id not in cut]
        undecided = [s for sid, s in cut.items() if sid not in {c.sample_id for c in items}]
        base = [c for c in items if c.condition == "baseline"]
        sections = [_rates_section(items, base, undecided)]
        topics = an.by_topic(base)
        if len(topics) > 1 or (topics and topics[0].topic != an.NO_TOPIC):
            sections.append(_topic_section(topics))
        sections += _profile_sections(base, opts.bootstrap)
        bias = an.position_bias(items)
        if bias is not None:
            sections.append(_bias_section(bias))
        steer = an.steerability(items)
        if steer:
            sections.append(_steer_section(steer))
        guard = guard_section(scores)
        if guard is not None:
            sections.append(guard)
        return sections


# --------------------------------------------------------------------------- sections


def _r(x: Rate | None) -> str:
    return "n/a" if x is None else x.short()


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rates_section(
    items: list[an.Choice], base: list[an.Choice], undecided: list[dict[str, Any]]
) -> ReportSection:
    rows = []
    cut_base = [s for s in undecided if (s["metadata"] or {}).get("condition") == "baseline"]
    for label, group, cut in (
        ("all samples", items, undecided),
        ("baseline (no system prompt)", base, cut_base),
    ):
        r = an.choice_rates(group)
        rows.append([label, str(r.n), str(len(cut)), _r(r.na), _r(r.to_do), _r(r.first_position)])
    text = _table(
        ["samples", "n (decided)", "undecided", "NA (unparsed)", "chose to do", "chose Action 1"],
        rows,
    )
    text += (
        "\n\nRates with 95% Wilson intervals; 'chose ...' shares are among parsed answers. "
        "Undecided: cut off by a limit or failed before answering, left out of every rate."
    )
    return ReportSection("Choices", text)


def _topic_section(topics: list[an.TopicSummary]) -> ReportSection:
    rows = [
        [
            t.topic,
            str(t.dilemmas),
            str(t.rates.n),
            _r(t.rates.na),
            _r(t.rates.to_do),
            _r(t.rates.first_position),
            "n/a" if t.top_value is None else f"{t.top_value} ({t.top_score:+.2f})",
        ]
        for t in topics
    ]
    text = _table(
        ["topic", "dilemmas", "choices", "NA", "chose to do", "chose Action 1", "top value"],
        rows,
    ) + (
        "\n\nBaseline choices (no system prompt), both orders, per topic of the dilemma; "
        "top value: the highest selected - neglected score among the topic's choices."
    )
    return ReportSection("Topics (baseline choices)", text)


def _fmt(s: an.DimensionScore) -> str:
    if s.score is None:
        return "n/a"
    ci = f" [{s.low:+.2f}, {s.high:+.2f}]" if s.low is not None and s.high is not None else ""
    return f"{s.score:+.2f}{ci}"


def _profile_sections(base: list[an.Choice], n_boot: int) -> list[ReportSection]:
    theories = an.theory_profile(base, n_boot=n_boot)
    if not theories:
        return [
            ReportSection(
                "Five-theory profile",
                "No value profile: this data source has no values per action (e.g. dilemma.csv "
                "alone supports the forced choice only).",
            )
        ]
    rows = [
        [t, d, str(s.selected), str(s.neglected), _fmt(s)]
        for t, dims in theories.items()
        for d, s in sorted(dims.items(), key=lambda kv: -(kv[1].score or 0))
    ]
    panels = [
        (t, [(d, s.score, s.low, s.high) for d, s in sorted(dims.items())])
        for t, dims in theories.items()
    ]
    profile = ReportSection(
        "Five-theory profile (baseline choices)",
        _table(["theory", "dimension", "selected", "neglected", "score [95% CI]"], rows)
        + "\n\nScore = share selected - share neglected, in [-1, 1]; interval: seeded "
        "bootstrap over choices.",
        [Figure("Five-theory profile", hbar_panels(panels, xlabel="selected - neglected"))],
    )
    values = an.value_profile(base, n_boot=n_boot)
    ranked = sorted(
        ((v, s) for v, s in values.items() if s.score is not None),
        key=lambda kv: (-(kv[1].score or 0), kv[0]),
    )
    top, bottom = ranked[:10], ranked[-10:][::-1] if len(ranked) > 10 else []
    value_rows = [[v, str(s.selected), str(s.neglected), _fmt(s)] for v, s in ranked]
    panels_v = [("most selected", [(v, s.score, s.low, s.high) for v, s in top])]
    if bottom:
        panels_v.append(("most neglected", [(v, s.score, s.low, s.high) for v, s in bottom]))
    value_section = ReportSection(
        "Values (baseline choices)",
        _table(["value", "selected", "neglected", "score [95% CI]"], value_rows),
        [Figure("Values", hbar_panels(panels_v, xlabel="selected - neglected"))],
    )
    return [profile, value_section]


def _bias_section(bias: an.PositionBias) -> ReportSection:
    rows = [
        [
            "original (Action 1 = to do)",
            _r(bias.original.to_do),
            _r(bias.original.first_position),
            _r(bias.original.na),
        ],
        [
            "swapped (Action 1 = not to do)",
            _r(bias.swapped.to_do),
            _r(bias.swapped.first_position),
            _r(bias.swapped.na),
        ],
    ]
    e = bias.order_effect
    text = _table(["order", "chose to do", "chose Action 1", "NA"], rows) + (
        f"\n\nSame action in both orders: {_r(bias.consistent)} of the pairs answered in both. "
        f"Action 1 chosen at a rate of 0.5 (exact binomial test): p = {bias.first_position_p:.3g}. "
        f"Order effect on 'to do' (exact McNemar, {e.n_pairs} pairs, {e.b} to do -> not, "
        f"{e.c} not -> to do): p = {e.p_value:.3g}."
    )
    fig = grouped_rates(
        ["chose to do", "chose Action 1"],
        {
            "original": [_bar(bias.original.to_do), _bar(bias.original.first_position)],
            "swapped": [_bar(bias.swapped.to_do), _bar(bias.swapped.first_position)],
        },
        ylabel="share of parsed answers",
    )
    return ReportSection("Position bias (baseline, both orders)", text, [Figure("Position", fig)])


def _bar(x: Rate | None, label: str = "") -> tuple[str, float | None, float | None, float | None]:
    if x is None:
        return (label, None, None, None)
    return (label, x.rate, x.low, x.high)


def _values_note(steer: list[an.Steerability]) -> str:
    """Which values each principle was measured by, and where they come from."""
    source = {
        "given": "given by the principles file",
        "lexicon": "mapped by labelgate's lexicon (evals/data/principle_values.yaml)",
    }
    lines = [
        f"- {s.principle_id}: "
        + (
            f"{', '.join(s.values)} ({source.get(s.values_from or '', 'source not recorded')})"
            if s.values
            else "no values (the lexicon names none of its words): measured as 'to do'"
        )
        for s in steer
    ]
    return "Values of each principle:\n\n" + "\n".join(lines)


def _steer_section(steer: list[an.Steerability]) -> ReportSection:
    rows = []
    series: dict[str, list[Any]] = {"baseline": [], "support": [], "oppose": []}
    for s in steer:
        base = s.baseline_aligned if s.metric == "aligned" else s.baseline.to_do
        series["baseline"].append(_bar(base))
        for direction in ("support", "oppose"):
            o: an.SteerOutcome | None = getattr(s, direction)
            if o is None:
                series[direction].append(_bar(None))
                continue
            value = o.aligned if s.metric == "aligned" else o.rates.to_do
            series[direction].append(_bar(value))
            rows.append(
                [
                    s.principle_id,
                    s.metric,
                    direction,
                    _r(base),
                    _r(value),
                    f"{o.test.shift:+.2f}",
                    f"{o.test.b}/{o.test.c}",
                    f"{o.test.p_value:.3g}",
                ]
            )
    text = (
        _table(
            [
                "principle",
                "metric",
                "prompt",
                "baseline",
                "steered",
                "shift",
                "changes -/+",
                "p (McNemar)",
            ],
            rows,
        )
        + (
            "\n\nMetric 'aligned': share of choices of the action that serves the principle's "
            "values (dilemmas where exactly one action does); 'to_do': share choosing to do. "
            "Paired with the baseline by dilemma, order and seed; exact McNemar test."
        )
        + "\n\n"
        + _values_note(steer)
    )
    fig = grouped_rates([s.principle_id for s in steer], series, ylabel="rate")
    return ReportSection("Steerability", text, [Figure("Steerability", fig)])
