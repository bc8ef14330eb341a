"""Terminal views of the trace queries (rich). Stored text is untrusted: only ``Text`` objects,
never markup strings, carry it, so ``[bold]`` or escape codes in a prompt stay inert text."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from labelgate.guard.audit.views import (
    DecisionView,
    MessageView,
    RequestView,
    SpanView,
    TraceSummary,
    TraceView,
)

ACTION_STYLE = {
    "allow": "green",
    "log": "cyan",
    "redact": "yellow",
    "ask": "magenta",
    "deny": "bold red",
}
_SHOWN_ATTRIBUTES = (
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.agent.name",
    "gen_ai.agent.id",
    "gen_ai.tool.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons",
    "labelgate.eval.run_id",
    "labelgate.eval.sample_id",
    "labelgate.eval.status",
    "error.type",
)


def console() -> Console:
    # Piped output (grep, less) gets a wide page rather than rich's 80-column default,
    # so trace ids and labels are not cut; $COLUMNS still wins.
    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 180
    return Console(highlight=False, emoji=False, width=width)


def _safe(text: Any) -> str:
    """Control characters (terminal escapes) shown as visible escapes."""
    raw = "" if text is None else str(text)
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in raw)


def _action(action: str | None) -> Text:
    return Text(action or "-", style=ACTION_STYLE.get(action or "", ""))


def trace_table(found: list[TraceSummary]) -> Table:
    table = Table(title=f"{len(found)} trace(s)", show_lines=False)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("trace", no_wrap=True)
    for name in ("root", "agents", "models", "decision", "status"):
        table.add_column(name)
    table.add_column("label")
    table.add_column("ms", justify="right")
    for t in found:
        table.add_row(
            t.started.strftime("%Y-%m-%d %H:%M:%S") if t.started else "",
            t.trace_id,
            Text(_safe(t.root)),
            Text(_safe(", ".join(t.agents))),
            Text(_safe(", ".join(t.models))),
            _action(t.decision),
            Text(t.status or "", style="red" if t.status in ("error", "denied") else ""),
            Text(_safe("; ".join(t.labels))),
            f"{t.duration_ms:.1f}" if t.duration_ms is not None else "",
        )
    return table


def trace_tree(view: TraceView, *, full: bool = False, attributes: bool = False) -> Tree:
    head = Text.assemble(("trace ", "bold"), view.trace_id)
    if view.duration_ms is not None:
        head.append(f"  {view.duration_ms:.1f} ms, {len(view.spans)} span(s)", style="dim")
    tree = Tree(head)
    roots = view.roots
    if view.focus:
        roots = [s for s in view.spans if s.span_id == view.focus] or roots
        tree.add(Text(f"(showing span {view.focus} of this trace)", style="dim"))
    for root in roots:
        _span(tree, root, full=full, attributes=attributes)
    for request in view.requests:
        _request(tree.add(Text("request without a span", style="dim")), request, full=full)
    return tree


def _span(parent: Tree, span: SpanView, *, full: bool, attributes: bool) -> None:
    line = Text.assemble((_safe(span.name), "bold"), (f"  [{span.operation}]", "blue"))
    line.append(f"  {span.duration_ms:.2f} ms at +{span.offset_ms:.2f} ms", style="dim")
    if span.status == "error":
        line.append(f"  ERROR {_safe(span.status_message or '')}", style="bold red")
    if span.label:
        line.append("  label ", style="dim")
        line.append(_safe(span.label), style="magenta")
    node = parent.add(line)
    shown = span.attributes if attributes else _key_attributes(span.attributes)
    for key, value in shown.items():
        node.add(Text(f"{key} = {_safe(_fmt(value))}", style="dim"))
    for decision in span.decisions:
        _decision(node, decision)
    if span.request is not None:
        _request(node, span.request, full=full, decisions=not span.decisions)
    for child in span.children:
        _span(node, child, full=full, attributes=attributes)


def _key_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: attrs[k] for k in _SHOWN_ATTRIBUTES if k in attrs}


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _request(parent: Tree, request: RequestView, *, full: bool, decisions: bool = True) -> None:
    line = Text.assemble(("request ", "bold"), request.id)
    line.append(f"  agent {_safe(request.agent or '-')}  model {_safe(request.model or '-')}")
    line.append(f"  status {request.status}", style="red" if request.status != "ok" else "")
    if request.input_tokens is not None:
        line.append(f"  tokens {request.input_tokens}->{request.output_tokens}", style="dim")
    node = parent.add(line)
    if request.error:
        node.add(Text(f"error: {_safe(request.error)}", style="red"))
    for message in request.messages:
        _message(node, message, full=full)
    if decisions:
        for decision in request.decisions:
            _decision(node, decision)


def _message(parent: Tree, message: MessageView, *, full: bool) -> None:
    who = message.role or "?"
    if message.name:
        who += f" {message.name}"
    line = Text.assemble((f"#{message.position} {_safe(who)}", "bold"), f" ({message.kind})")
    if message.label is not None:
        line.append("  label ", style="dim")
        line.append(_safe(message.label.short), style="magenta")
    node = parent.add(line)
    content = _safe(message.content or "")
    if not full and len(content) > 160:
        content = content[:160] + "…"
    if content:
        node.add(Text(content))
    for evidence in message.evidence:
        why = Text.assemble(("why: ", "dim"), (evidence.origin, "cyan"))
        if evidence.rule:
            why.append(f" rule {_safe(evidence.rule)}", style="yellow")
        why.append(f" {_safe(evidence.detail)}")
        if evidence.ref:
            why.append(f" (ref {_safe(evidence.ref)})", style="dim")
        node.add(why)
    for call in message.tool_calls:
        args = _safe(_fmt(call.get("arguments", "")))
        text = Text(f"tool call {_safe(call.get('name'))}({args})")
        if call.get("action"):
            text.append(" -> ")
            text.append_text(_action(call["action"]))
        node.add(text)


def _decision(parent: Tree, decision: DecisionView) -> None:
    line = Text.assemble(("decision ", "bold"), _action(decision.action), f" at {decision.sink}")
    if decision.rule:
        line.append(f"  rule {_safe(decision.rule)}", style="yellow")
    node = parent.add(line)
    node.add(Text(f"reason: {_safe(decision.reason)}"))
    chain = node.add(Text("rule chain", style="dim"))
    for step in decision.chain:
        mark = "✔" if step.matched else "·"
        style = "bold" if step.decisive else "dim"
        text = Text(f"{mark} {step.section or ''}/{_safe(step.rule)}", style=style)
        if step.action:
            text.append(" -> ")
            text.append_text(_action(step.action))
        text.append(f"  {_safe(step.why or '')}", style="dim")
        chain.add(text)
