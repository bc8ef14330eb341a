"""``labelgate policy``: validate policy files, explain decisions, print the JSON Schema.

Only click is imported at module level so ``labelgate --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


@click.group()
def policy() -> None:
    """Policy files: validate them, explain a decision, print the JSON Schema."""


def _resolve(name: str) -> str:
    """A policy file's path, or a shipped pack's when ``name`` is no file (``default``)."""
    from labelgate.policies import pack_names, pack_path

    if Path(name).exists() or name.removesuffix(".yaml") not in pack_names():
        return name
    return str(pack_path(name))


@policy.command(name="list")
def list_packs() -> None:
    """List the shipped policy packs and where they are installed."""
    from labelgate.policies import pack_names, pack_path

    for name in pack_names():
        click.echo(f"{name}\t{pack_path(name)}")


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check policy FILES (paths, or shipped pack names such as ``default``); one line per
    file, exit status 1 if any is invalid."""
    from labelgate.guard.policy import PolicyError, load_policy

    failed = False
    for name in files:
        try:
            loaded = load_policy(_resolve(name))
        except PolicyError as exc:
            failed = True
            click.echo(f"error: {exc}", err=True)
            continue
        counts = ", ".join(f"{n} {section}" for section, n in loaded.summary().items())
        click.echo(f"{name}: ok ({counts})")
    if failed:
        sys.exit(1)


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def _load(path: str) -> Any:
    from labelgate.guard.policy import PolicyError, load_policy

    try:
        return load_policy(_resolve(path))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


@policy.command()
@click.argument("policy_file", type=click.Path(dir_okay=False))
@click.argument("event_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def explain(policy_file: str, event_file: str, as_json: bool) -> None:
    """Decide EVENT_FILE (a sink event, JSON) under POLICY_FILE and show the rule chain."""
    from pydantic import ValidationError

    from labelgate.guard.policy import SinkEvent

    loaded = _load(policy_file)
    try:
        event = SinkEvent.model_validate(_read_json(event_file))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise click.ClickException(f"{event_file}: {where}: {first['msg']}") from None
    decision = loaded.decide(event)
    if as_json:
        click.echo(decision.model_dump_json(indent=2))
        return
    from labelgate.guard.policy.render import print_decision

    print_decision(decision, event)


@policy.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to this file, not stdout."
)
def schema(output: str | None) -> None:
    """Print (or write) the policy JSON Schema, for editors and CI."""
    from labelgate.guard.policy.schema import schema_text, write_schema

    if output:
        click.echo(f"wrote {write_schema(output)}")
    else:
        click.echo(schema_text(), nl=False)
