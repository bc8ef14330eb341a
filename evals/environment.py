"""Environments: the tools a sample's agent may call and the state those tools change.

Scorers read the final state (what the agent did), not the agent's words about it. A family
builds a fresh Environment per sample, so samples never see each other's state.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

State = dict[str, Any]
ToolFn = Callable[[State, dict[str, Any]], str]
AsyncToolFn = Callable[[State, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    fn: ToolFn
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    # A tool whose work must not block the event loop (a real shell): awaited by ``acall``.
    afn: AsyncToolFn | None = None

    def spec(self) -> dict[str, Any]:
        """The OpenAI tool description."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolError(Exception):
    """A tool call the environment refuses; the agent sees the message as the tool result."""


class Environment:
    def __init__(self, tools: Iterable[Tool] = (), state: State | None = None) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.state: State = state if state is not None else {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def specs(self) -> list[dict[str, Any]]:
        return [tool.spec() for tool in self.tools.values()]

    def call(self, name: str, arguments: str | dict[str, Any] | None) -> str:
        """Run a tool; bad names and arguments come back as text, as a real API would say."""
        try:
            args = _arguments(arguments)
        except ToolError as exc:
            return f"error: {exc}"
        self.calls.append((name, args))
        tool = self.tools.get(name)
        if tool is None:
            return f"error: no tool named {name!r}"
        try:
            return tool.fn(self.state, args)
        except ToolError as exc:
            return f"error: {exc}"

    async def acall(self, name: str, arguments: str | dict[str, Any] | None) -> str:
        """``call`` for the agent loop: a tool with ``afn`` is awaited (off the event loop)."""
        tool = self.tools.get(name)
        if tool is None or tool.afn is None:
            return self.call(name, arguments)
        try:
            args = _arguments(arguments)
        except ToolError as exc:
            return f"error: {exc}"
        self.calls.append((name, args))
        try:
            return await tool.afn(self.state, args)
        except ToolError as exc:
            return f"error: {exc}"


def _arguments(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ToolError(f"arguments are not JSON: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise ToolError("arguments must be a JSON object")
    return parsed
