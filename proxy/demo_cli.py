"""``labelgate demo``: the command only; the demo itself (proxy/demo.py) loads when it runs,
so ``labelgate --help`` stays light."""

from __future__ import annotations

from pathlib import Path

import click

from labelgate.policies import pack_path

DEMO_POLICY = pack_path("demo")


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".labelgate"),
    show_default=True,
    help="Where the audit store, fingerprints, eval results and reports go.",
)
@click.option(
    "--policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEMO_POLICY,
    show_default=True,
    help="The policy the proxy enforces.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Scripted models instead of SmolLM2 (seconds, no llama.cpp; for tests).",
)
@click.option("--evals/--no-evals", "with_evals", default=True, show_default=True)
def demo(state_dir: Path, policy: Path, quick: bool, with_evals: bool) -> None:
    """Run the guard on the local model: four agent flows, a short eval of each family."""
    from labelgate.proxy.demo import run_demo

    run_demo(state_dir, policy, quick, with_evals)
