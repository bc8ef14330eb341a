"""Reports: a self-contained HTML file (plots embedded as base64 PNGs) and a markdown summary
beside it, from what the results store holds for a run; and a comparison of two runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import markdown_it
from jinja2 import Environment as Jinja
from jinja2 import select_autoescape
from markupsafe import Markup

from labelgate.evals.agent import undecided_reason
from labelgate.evals.family import ComparesScorers, FamilyUnavailable, ReportSection, get_family
from labelgate.evals.stats import mcnemar_exact, rate
from labelgate.evals.store import ResultsStore

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>labelgate eval report {{ run.run_id }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
code { background: #f4f4f4; padding: 0 3px; }
</style></head><body>
<h1>Eval report: {{ run.family }} on {{ run.model }}</h1>
{% for section in sections %}
<h2>{{ section.title }}</h2>
{{ render(section.markdown) }}
{% for fig in section.figures %}
<figure><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.png_base64 }}">
{% if fig.caption %}<figcaption>{{ fig.caption }}</figcaption>{% endif %}</figure>
{% endfor %}
{% endfor %}
</body></html>
"""


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def run_section(run: dict[str, Any], samples: list[dict[str, Any]]) -> ReportSection:
    """What was run, how it went: the same for every family."""
    status = Counter(s["status"] for s in samples)
    stops = Counter(s["stop_reason"] for s in samples if s["status"] == "done")
    calls = sum(s["model_calls"] or 0 for s in samples)
    hits = sum(s["cache_hits"] or 0 for s in samples)
    duration = sum(s["duration_s"] or 0.0 for s in samples)
    tokens_in = sum(s["input_tokens"] or 0 for s in samples)
    tokens_out = sum(s["output_tokens"] or 0 for s in samples)
    cache = (
        f"on: {hits} of {calls} model calls answered from the cache"
        if run["cache_enabled"]
        else "off"
    )
    options = json.loads(run["options"])
    rows = [
        ["run id", f"`{run['run_id']}`"],
        ["family / model", f"{run['family']} / `{run['model']}`"],
        ["through proxy", run["via_proxy"] or "no (direct)"],
        ["status", f"{run['status']} (started {run['started_at']}, finished {run['finished_at']})"],
        [
            "samples",
            f"{len(samples)} of {run['n_samples']} recorded: "
            + ", ".join(f"{v} {k}" for k, v in sorted(status.items())),
        ],
        ["stop reasons", ", ".join(f"{v} {k}" for k, v in sorted(stops.items())) or "-"],
        ["undecided (cut off by a limit, or failed)", _undecided(samples)],
        ["model calls", str(calls)],
        ["model-call cache", cache],
        ["tokens (in / out)", f"{tokens_in} / {tokens_out}"],
        ["sample time (sum)", f"{duration:.1f} s"],
        ["limits", ", ".join(f"{k}={v}" for k, v in options.get("limits", {}).items())],
        ["options", f"`{json.dumps(options.get('family_options', {}), sort_keys=True)}`"],
    ]
    errors = [s for s in samples if s["status"] == "error"][:5]
    text = _md_table(["", ""], rows)
    if errors:
        text += "\n\nFirst errors:\n\n" + "\n".join(
            f"- `{s['sample_id']}`: {s['error']}" for s in errors
        )
    return ReportSection("Run", text)


def _undecided(samples: list[dict[str, Any]]) -> str:
    """Samples whose rollout did not end by the agent's own answer: no verdict on them is a
    clean "no" (state-based scores are NA with the reason); the family's tables leave them
    out of their rates and count them beside."""
    reasons = Counter(
        "error" if s["status"] == "error" else s["stop_reason"]
        for s in samples
        if s["status"] == "error" or undecided_reason(s["stop_reason"])
    )
    if not reasons:
        return "0"
    total = sum(reasons.values())
    return f"{total} of {len(samples)}: " + ", ".join(
        f"{v} {k}" for k, v in sorted(reasons.items())
    )


def sections_for(store: ResultsStore, run_id: str) -> tuple[dict[str, Any], list[ReportSection]]:
    run = store.find_run(run_id)
    samples = store.samples(run["run_id"])
    sections = [run_section(run, samples)]
    try:
        family = get_family(run["family"])
    except FamilyUnavailable:
        return run, sections
    options = json.loads(run["options"]).get("family_options", {})
    sections += family.analyze(samples, store.scores(run["run_id"]), options)
    return run, sections


def write_report(store: ResultsStore, run_id: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<run>.html`` and ``<run>.md`` into out_dir; remember the HTML path in the run."""
    run, sections = sections_for(store, run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path = out / f"{run['run_id']}.html"
    md_path = out / f"{run['run_id']}.md"
    md = markdown_it.MarkdownIt("commonmark").enable("table")
    env = Jinja(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE).render(
        run=run, sections=sections, render=lambda text: Markup(md.render(text))
    )
    html_path.write_text(html, encoding="utf-8")
    md_path.write_text(markdown_summary(run, sections), encoding="utf-8")
    store.set_report_path(run["run_id"], str(html_path))
    return html_path, md_path


def markdown_summary(run: dict[str, Any], sections: list[ReportSection]) -> str:
    parts = [f"# Eval report: {run['family']} on {run['model']}\n"]
    for section in sections:
        parts.append(f"## {section.title}\n\n{section.markdown}\n")
        parts += [f"*(figure in the HTML report: {f.title})*\n" for f in section.figures]
    return "\n".join(parts)


# --------------------------------------------------------------------------- compare


def compare_runs(store: ResultsStore, first: str, second: str) -> str:
    """Markdown: the primary score of two runs side by side, paired on shared sample ids (every
    score a family names in ``compare_scorers``, each in its own section)."""
    a, b = store.find_run(first), store.find_run(second)
    if a["family"] != b["family"]:
        raise ValueError(f"runs of different families: {a['family']} and {b['family']}")
    family = get_family(a["family"])
    scorers = (
        family.compare_scorers if isinstance(family, ComparesScorers) else (family.primary_scorer,)
    )
    parts = [_compare_scorer(store, a, b, scorer) for scorer in scorers]
    if len(parts) > 1:
        parts = [f"## {s}\n\n{part}" for s, part in zip(scorers, parts, strict=True)]
    return f"# Compare {a['run_id']} vs {b['run_id']}\n\n" + "\n".join(parts)


def _compare_scorer(store: ResultsStore, a: dict[str, Any], b: dict[str, Any], scorer: str) -> str:
    """One scorer of two runs side by side, paired on the samples both scored."""
    va, vb = _numeric(store, a["run_id"], scorer), _numeric(store, b["run_id"], scorer)
    rows = []
    for run, values in ((a, va), (b, vb)):
        known = [v for v in values.values() if v is not None]
        rows.append(
            [
                f"`{run['run_id']}`",
                f"`{run['model']}`",
                run["via_proxy"] or "direct",
                str(len(values)),
                rate(len(values) - len(known), len(values)).short(),
                rate(sum(v >= 0.5 for v in known), len(known)).short(),
            ]
        )
    pairs = _paired(va, vb)
    test = mcnemar_exact(pairs)
    agree = rate(sum(x == y for x, y in pairs), len(pairs))
    text = _md_table(
        ["run", "model", "proxy", "samples", "NA", f"{scorer} = yes (score >= 0.5)"], rows
    )
    text += (
        f"\n\nPaired on {len(pairs)} samples scored in both runs: agreement {agree.short()}; "
        f"change {test.shift:+.3f} ({test.b} yes -> no, {test.c} no -> yes), "
        f"exact McNemar p = {test.p_value:.3g}.\n"
    )
    return text


def _paired(
    first: dict[str, float | None], second: dict[str, float | None]
) -> list[tuple[bool, bool]]:
    """(score >= 0.5 in the first run, in the second) for each sample both runs scored."""
    pairs = []
    for sample in sorted(set(first) & set(second)):
        x, y = first[sample], second[sample]
        if x is not None and y is not None:
            pairs.append((x >= 0.5, y >= 0.5))
    return pairs


def _numeric(store: ResultsStore, run_id: str, scorer: str) -> dict[str, float | None]:
    done = {s["sample_id"] for s in store.samples(run_id) if s["status"] == "done"}
    return {
        s["sample_id"]: s["numeric"]
        for s in store.scores(run_id)
        if s["scorer"] == scorer and s["sample_id"] in done
    }
