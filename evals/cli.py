"""``labelgate eval``: list families, run one, report on a run, compare two runs.

Heavy imports (litellm, llama.cpp, matplotlib, scipy) happen inside the commands, so
``labelgate --help`` and ``labelgate eval list`` stay fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from labelgate.guard.cli import CLIError

db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Results and audit database (default: $LABELGATE_DB or ./.labelgate/audit.db).",
)
out_option = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where reports go (default: a 'reports' folder beside the database).",
)


def _db(db: Path | None) -> Path:
    from labelgate.guard.paths import default_db_path

    return db if db is not None else default_db_path()


def _out(out_dir: Path | None, db: Path) -> Path:
    return out_dir if out_dir is not None else db.parent / "reports"


@click.group("eval")
def eval_group() -> None:
    """Run agent-safety evals and report on them."""


@eval_group.command("list")
def list_cmd() -> None:
    """The eval families, and whether each is available yet."""
    from labelgate.evals.family import FAMILIES

    for info in FAMILIES.values():
        state = "available" if info.available else "not yet available"
        click.echo(f"{info.name:<10} {state:<18} {info.description}")


def _load_script(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    answers = data.get("responses") if isinstance(data, dict) else data
    if not isinstance(answers, list) or not answers:
        raise CLIError(
            f"{path}: a script is a non-empty list of responses (or {{responses: [...]}})"
        )
    return [str(a) for a in answers]


@eval_group.command("run")
@click.argument("family")
@click.option(
    "--model",
    "model_name",
    default="local/smollm2",
    show_default=True,
    help="local/smollm2, scripted (with --script), injection-oracle, or any litellm model string.",
)
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Responses for --model scripted (YAML/JSON list), replayed in a cycle.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N scenarios.")
@click.option("--via-proxy", metavar="URL", help="Call the model through a labelgate proxy.")
@click.option(
    "--guard-policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Call the model through an in-process labelgate proxy enforcing this policy.",
)
@click.option("--proxy-key", envvar="LABELGATE_PROXY_KEY", help="API key for the proxy.")
@click.option(
    "--api-base",
    metavar="URL",
    help="An OpenAI-compatible endpoint serving --model (vLLM, Ollama, a gateway), "
    "e.g. http://127.0.0.1:8000/v1.",
)
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Environment variable holding the --api-base endpoint's key (default: none sent).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    help="Dilemma data file or DailyDilemmas folder (default: the starter set).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "actions", "situations"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--principles",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Steering principles (YAML, or CSV with a 'principle' column).",
)
@click.option(
    "--steer",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="How many principles to steer with (0: no steering).",
)
@click.option(
    "--swap/--no-swap",
    default=True,
    show_default=True,
    help="Also ask with the actions in swapped order (position-bias control).",
)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Samples per scenario variant (and seed), each with a seed of its own.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Sampling temperature of the model calls (0: greedy).",
)
@click.option(
    "--top-p",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    help="Nucleus sampling of the model calls (default: not sent).",
)
@click.option(
    "--option",
    "-O",
    "extra_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A family option (value read as YAML), e.g. -O agents=5 -O defenses=[none,vigilance].",
)
@click.option("--grader", help="Model that reads answers the parser cannot.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--cache/--no-cache",
    default=False,
    show_default=True,
    help="Reuse stored answers to identical model requests.",
)
@click.option("--run-id", help="Resume this run (or name a new one).")
@click.option("--max-turns", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=16_000,
    show_default=True,
    help="Token budget per sample.",
)
@click.option(
    "--max-output-tokens",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Completion tokens per model call (room for an agent to reason).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds per sample.",
)
@click.option("--capture-content", is_flag=True, help="Record prompts and answers in spans.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
@db_option
@out_option
def run_cmd(
    family: str,
    model_name: str,
    script: Path | None,
    limit: int | None,
    via_proxy: str | None,
    guard_policy: Path | None,
    proxy_key: str | None,
    api_base: str | None,
    api_key_env: str | None,
    data: Path | None,
    fmt: str,
    principles: Path | None,
    steer: int,
    swap: bool,
    seeds: str,
    epochs: int,
    temperature: float,
    top_p: float | None,
    extra_options: tuple[str, ...],
    grader: str | None,
    concurrency: int,
    cache: bool,
    run_id: str | None,
    max_turns: int,
    max_tokens: int,
    max_output_tokens: int,
    timeout: float,
    capture_content: bool,
    progress: bool | None,
    db: Path | None,
    out_dir: Path | None,
) -> None:
    """Run FAMILY (dilemmas, scheming, spread, injection); print the run id and report path."""
    from labelgate.evals.agent import AgentLimits
    from labelgate.evals.api import EvalError, run_eval

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise CLIError(f"--seeds must be integers separated by commas, not {seeds!r}") from None
    options: dict[str, Any] = {"data": str(data) if data else None, "seeds": seed_list}
    if family == "dilemmas":  # the dilemma-specific flags above
        options |= {
            "format": fmt,
            "principles": str(principles) if principles else None,
            "steer": steer,
            "swap": swap,
            "grader": grader,
        }
    if family == "scheming" and grader:  # grades the interrogation replies
        options["grader"] = grader
    options |= _extra_options(extra_options)
    if guard_policy and via_proxy:
        raise CLIError("--guard-policy starts its own proxy: give it or --via-proxy, not both")
    if api_base and via_proxy:
        raise CLIError("--via-proxy decides what serves the model: give it or --api-base, not both")
    if api_key_env and not api_base:
        raise CLIError("--api-key-env names the key of an --api-base endpoint: give --api-base")
    if model_name == "scripted" and script is None and not via_proxy:
        raise CLIError("--model scripted needs --script FILE (a list of responses)")
    try:
        result = run_eval(
            family,
            model=model_name,
            script=_load_script(script) if script is not None else None,
            limit=limit,
            options=options,
            limits=AgentLimits(
                max_turns=max_turns,
                max_tokens=max_tokens,
                max_output_tokens=max_output_tokens,
                timeout_s=timeout,
                temperature=temperature,
                top_p=top_p,
            ),
            epochs=epochs,
            via_proxy=via_proxy,
            proxy_key=proxy_key,
            api_base=api_base,
            api_key_env=api_key_env,
            guard_policy=guard_policy,
            db=_db(db),
            out_dir=out_dir,
            run_id=run_id,
            concurrency=concurrency,
            cache=cache,
            capture_content=capture_content,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    except EvalError as exc:
        raise CLIError(str(exc)) from None
    summary, html, md = result.summary, result.report_html, result.report_md
    click.echo(
        f"{summary.done} done, {summary.failed} failed, {summary.skipped} resumed as done, "
        f"{summary.model_calls} model calls ({summary.cache_hits} from cache), "
        f"{summary.duration_s:.1f} s",
        err=True,
    )
    click.echo(f"run: {summary.run_id}")
    click.echo(f"report: {html}")
    click.echo(f"summary: {md}")
    if summary.failed:
        sys.exit(2)


def _extra_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value parsed as YAML (numbers, lists, booleans)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--option takes KEY=VALUE, not {pair!r}")
        try:
            found[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise CLIError(f"--option {key}: the value is not valid YAML: {value!r}") from None
    return found


@eval_group.command("report")
@click.argument("run")
@db_option
@out_option
def report_cmd(run: str, db: Path | None, out_dir: Path | None) -> None:
    """Write RUN's HTML report (with plots) and markdown summary; print their paths."""
    from labelgate.evals.report import write_report
    from labelgate.evals.store import ResultsStore

    path = _db(db)
    store = ResultsStore(path)
    try:
        html, md = write_report(store, run, _out(out_dir, path))
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    finally:
        store.close()
    click.echo(f"report: {html}")
    click.echo(f"summary: {md}")


@eval_group.command("compare")
@click.argument("first")
@click.argument("second")
@db_option
def compare_cmd(first: str, second: str, db: Path | None) -> None:
    """Compare two runs of one family, paired on their shared samples."""
    from labelgate.evals.report import compare_runs
    from labelgate.evals.store import ResultsStore

    store = ResultsStore(_db(db))
    try:
        click.echo(compare_runs(store, first, second))
    except (KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0])) from None
    finally:
        store.close()


@eval_group.command("oracle-serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=4100, show_default=True)
def oracle_serve_cmd(host: str, port: int) -> None:
    """Serve the injection family's faithful oracle (OpenAI API) for a `labelgate serve`."""
    import uvicorn

    from labelgate.evals.injection.server import app

    click.echo(f"injection-oracle on http://{host}:{port}/v1", err=True)
    uvicorn.run(app(), host=host, port=port, log_level="warning")


@eval_group.command("runs")
@db_option
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(db: Path | None, as_json: bool) -> None:
    """The runs in the database, newest first."""
    from labelgate.evals.store import ResultsStore

    path = _db(db)
    runs: list[dict[str, Any]] = []
    if path.exists():  # a listing must not create the database it lists
        store = ResultsStore(path)
        try:
            runs = store.list_runs()
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        click.echo(f"no eval runs in {path} (start one with: labelgate eval run FAMILY)")
    for r in runs:
        click.echo(
            f"{r['run_id']}  {r['family']:<9} {r['model']:<20} {r['status']:<8} "
            f"{r['n_samples']} samples  {r['report_path'] or ''}"
        )


if __name__ == "__main__":
    eval_group()
