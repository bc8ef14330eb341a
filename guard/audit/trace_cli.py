"""``labelgate trace``: list, show and export the traces of the audit store, and verify it.

Everything shown comes from ``guard.audit.query`` (the UI uses the same layer). Stored text is
untrusted (prompt injections): it is always rendered as plain ``rich.text.Text``, never as
markup.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labelgate.guard.audit.cli import _open, store_options, verify_store
from labelgate.guard.cli import CLIError

if TYPE_CHECKING:
    from labelgate.guard.audit.query import AuditReader


def _reader(db: Path | None, dsn: str | None) -> AuditReader:
    from labelgate.guard.audit.query import AuditReader

    store = _open(db, dsn)
    try:
        return AuditReader(store.reader_source())
    finally:
        store.close()


def _when(value: str | None) -> datetime | None:
    from labelgate.guard.audit.query import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: say 2h, 30m, 7d or an ISO date/time") from None


@click.group()
def trace() -> None:
    """List, show and export the traces of the audit store."""


@trace.command("list")
@store_options
@click.option("--since", help="Started after: 2h, 30m, 7d or an ISO date/time.")
@click.option("--until", help="Started before: same forms as --since.")
@click.option("--agent", help="The calling agent (request agent or gen_ai.agent.name).")
@click.option("--session", help="Session / conversation id.")
@click.option("--model", help="The model asked for.")
@click.option(
    "--decision",
    type=click.Choice(["allow", "log", "redact", "ask", "deny"]),
    help="Any decision of the trace took this action.",
)
@click.option("--label", help="A level, category, reader or source any item carried.")
@click.option("--search", "-s", help="Full-text search in messages, reasons and transcripts.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def list_(db: Path | None, dsn: str | None, as_json: bool, **filters: object) -> None:
    """Traces, newest first, with filters and search."""
    from labelgate.guard.audit.views import TraceFilter

    filters["since"] = _when(filters["since"])  # type: ignore[arg-type]
    filters["until"] = _when(filters["until"])  # type: ignore[arg-type]
    with _reader(db, dsn) as reader:
        found = reader.list_traces(TraceFilter.model_validate(filters))
    if as_json:
        for summary in found:
            click.echo(summary.model_dump_json())
        return
    from labelgate.guard.audit.render import console, trace_table

    console().print(trace_table(found))


@trace.command()
@store_options
@click.argument("ident")
@click.option("--full", is_flag=True, help="Whole message texts, not the first lines.")
@click.option("--attributes", is_flag=True, help="Every span attribute.")
def show(db: Path | None, dsn: str | None, ident: str, full: bool, attributes: bool) -> None:
    """The span tree of a trace: IDENT is a trace id (or prefix), a request id, an eval run
    id or an eval sample (RUN/SAMPLE)."""
    from labelgate.guard.audit.render import console, trace_tree
    from labelgate.guard.audit.views import NotFound

    with _reader(db, dsn) as reader:
        try:
            view = reader.trace(ident)
        except NotFound as exc:
            raise CLIError(str(exc)) from None
    console().print(trace_tree(view, full=full, attributes=attributes))


@trace.command()
@store_options
@click.argument("ident")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["otlp-json", "jsonl"]),
    default="otlp-json",
    show_default=True,
    help="OTLP/JSON (ExportTraceServiceRequest) or JSON lines (spans, requests, decisions).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export(db: Path | None, dsn: str | None, ident: str, fmt: str, output: Path | None) -> None:
    """Export one trace (same IDENT forms as show)."""
    from labelgate.guard.audit.export import to_json_lines, to_otlp_json
    from labelgate.guard.audit.views import NotFound

    with _reader(db, dsn) as reader:
        try:
            view = reader.trace(ident)
        except NotFound as exc:
            raise CLIError(str(exc)) from None
    if fmt == "otlp-json":
        text = json.dumps(to_otlp_json(view), ensure_ascii=False) + "\n"
    else:
        text = "".join(line + "\n" for line in to_json_lines(view))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@trace.command()
@store_options
@click.option("--expect", "expect_hash", default=None, help="A head hash from an earlier verify.")
def verify(db: Path | None, dsn: str | None, expect_hash: str | None) -> None:
    """The same check as ``labelgate audit verify``."""
    verify_store(db, dsn, expect_hash)
