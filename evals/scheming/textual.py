"""Tool calling over plain text, for models without a native tool API (the local SmolLM2
through llama.cpp returns text only).

The tools are described in the system message with one calling convention,
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the format SmolLM2 was tuned
on); the reply is parsed leniently: that tag, a bare JSON object with ``name`` and
``arguments``, or a fenced ``bash``/``sh`` code block (read as a bash call). Which form
matched is reported (``parse_tool_calls``), so a report can say how often a small model
managed to call a tool at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from labelgate.guard.models import ChatModel, ChatResult, Message

ParseKind = Literal["tagged", "json", "codeblock"]
TOOL_RESULT_CHARS = 1500
_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:bash|sh|shell|console)\s*\n(.*?)```", re.DOTALL)


def tool_instructions(tools: Sequence[dict[str, Any]]) -> str:
    lines = ["You can use these tools:"]
    for spec in tools:
        fn = spec.get("function", {})
        props = fn.get("parameters", {}).get("properties", {})
        args = ", ".join(f'"{k}": {v.get("type", "string")}' for k, v in props.items())
        lines.append(f"- {fn.get('name')}: {fn.get('description', '')} Arguments: {{{args}}}")
    lines.append(
        "To call a tool, answer with exactly one line like\n"
        '<tool_call>{"name": "bash", "arguments": {"command": "ls"}}</tool_call>\n'
        "The result comes back in the next message. When you are finished, answer without "
        "a tool call."
    )
    return "\n".join(lines)


def _calls_from_json(blob: Any) -> list[dict[str, Any]]:
    items = blob if isinstance(blob, list) else [blob]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {"command": args} if item["name"] == "bash" else {}
        calls.append({"name": item["name"], "arguments": args if isinstance(args, dict) else {}})
    return calls


def _json_objects(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    found, i = [], 0
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        found.append(obj)
        i = end
    return found


def parse_tool_calls(text: str) -> tuple[list[dict[str, Any]], ParseKind | None]:
    """Tool calls in a reply (name + arguments dicts) and the form they were written in."""
    for body in _TAG.findall(text):
        calls = [c for obj in _json_objects(body) for c in _calls_from_json(obj)]
        if not calls and body.strip().startswith("["):
            try:
                calls = _calls_from_json(json.loads(body))
            except json.JSONDecodeError:
                calls = []
        if calls:
            return calls, "tagged"
    calls = [c for obj in _json_objects(text) for c in _calls_from_json(obj)]
    if calls:
        return calls, "json"
    # Comment-only blocks are prose in disguise, not an attempt to run anything.
    lines = [
        ln.strip().removeprefix("$").strip()
        for block in _FENCE.findall(text)
        for ln in block.splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    if lines:
        return [{"name": "bash", "arguments": {"command": " ; ".join(lines)}}], "codeblock"
    return [], None


def to_text_messages(
    messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
) -> list[Message]:
    """The conversation with tool calls and results written out as text."""
    out: list[Message] = []
    for m in messages:
        role = m.get("role")
        content = str(m.get("content") or "")
        if role == "assistant" and m.get("tool_calls"):
            tags = [
                "<tool_call>"
                + json.dumps(
                    {
                        "name": c["function"]["name"],
                        "arguments": _loads(c["function"].get("arguments")),
                    }
                )
                + "</tool_call>"
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": "\n".join([content, *tags]).strip()})
        elif role == "tool":
            body = (
                content
                if len(content) <= TOOL_RESULT_CHARS
                else content[:TOOL_RESULT_CHARS] + "\n[truncated]"
            )
            out.append({"role": "user", "content": f"Tool result ({m.get('name')}):\n{body}"})
        else:
            out.append({"role": role, "content": content})
    if tools:
        text = tool_instructions(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def _loads(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments or {}


def _context_overflow(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "context window" in text or "context length" in text or "exceed" in text


class TextToolModel:
    """Wraps a text-only model so that the agent loop sees tool calls."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.trimmed = 0  # requests shortened to fit the context window

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        tools = params.pop("tools", None)
        choice = params.pop("tool_choice", None)
        offered = tools if tools and choice != "none" else None
        text_messages = to_text_messages(messages, offered)
        try:
            result = await self.inner.chat(text_messages, **params)
        except ValueError as exc:
            if not _context_overflow(exc) or len(text_messages) <= 5:
                raise
            # Keep the instructions, the task and the latest exchange; a small context
            # window (2048 for the local model) fills after a few file reads.
            self.trimmed += 1
            result = await self.inner.chat(text_messages[:2] + text_messages[-3:], **params)
        if offered is None:
            return result
        calls, _ = parse_tool_calls(result.text)
        shaped = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for i, c in enumerate(calls)
        ]
        return replace(result, tool_calls=shaped)
