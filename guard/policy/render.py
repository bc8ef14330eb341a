"""Human-readable output of decisions for ``labelgate policy explain``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from labelgate.guard.policy.events import Decision, SinkEvent
from labelgate.guard.policy.spec import Action

_STYLE = {
    Action.ALLOW: "green",
    Action.LOG: "cyan",
    Action.REDACT: "yellow",
    Action.ASK: "magenta",
    Action.DENY: "bold red",
}


def print_decision(decision: Decision, event: SinkEvent, console: Console | None = None) -> None:
    console = console or Console()
    style = _STYLE[decision.action]
    target = event.tool or event.effective_recipient or "-"
    console.print(f"[{style}]{decision.action.value.upper()}[/] {event.kind.value} {target}")
    console.print(f"reason: {decision.reason}", markup=False, highlight=False)
    console.print(f"decided by: {decision.rule or '(no rule: default allow)'}", markup=False)
    if decision.effect is not None:
        console.print(f"effect: {decision.effect.value}", markup=False)
    table = Table(title="rule chain", show_lines=False)
    for column in ("rule", "matched", "action", "why"):
        table.add_column(column, overflow="fold")
    for trace in decision.chain:
        mark = "DECIDED" if trace.decisive else ("yes" if trace.matched else "no")
        action = trace.action.value if trace.action else ""
        row_style = "bold" if trace.decisive else (None if trace.matched else "dim")
        table.add_row(trace.rule, mark, action, trace.why, style=row_style)
    console.print(table)
    for target_ in decision.redactions:
        what = target_.argument or "(whole content)"
        spans = f" spans {', '.join(target_.patterns)}" if target_.patterns else ""
        console.print(f"redact: {what}{spans} (rule {target_.rule})", markup=False)
    for prov in decision.transforms:
        console.print(f"{prov.origin.value} [{prov.ref}]: {prov.detail}", markup=False)
    console.print(f"decision id: {decision.id}", markup=False, style="dim")
