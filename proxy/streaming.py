"""Streams with held tool calls.

Text deltas pass through as they come. Tool-call deltas (and legacy ``function_call``), the
finish reasons and choice-less chunks (usage) are held; at the end the proxy assembles the
whole answer for the guard, then ``closing_chunks`` emits what the guard let through: appended
text, the surviving tool calls (each whole, in one delta), the finish reasons, the final
``labelgate`` extension field, the held usage chunk. A tool call is never sent in halves.

With ``hold_text`` (the guard already knows the answer's text cannot pass unchanged, e.g. its
inputs are above the recipient's clearance), text is held too and sent whole after the verdict.
"""

from __future__ import annotations

from typing import Any

import orjson

from labelgate.proxy.upstream import Chunk

DONE = b"data: [DONE]\n\n"
_ENVELOPE = ("id", "object", "created", "model", "system_fingerprint", "service_tier")
_HELD_DELTA_KEYS = ("tool_calls", "function_call")


class GuardEditError(ValueError):
    """The guard changed text that had already been streamed."""


def sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _Choice:
    __slots__ = (
        "calls",
        "finish",
        "function_call",
        "joined",
        "logprobs",
        "refusal",
        "role",
        "sent",
        "streamed",
        "text",
    )

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.sent: list[str] = []  # the text already streamed to the client
        self.streamed = ""  # the first ``joined`` pieces of ``sent``, joined (``sent_texts``)
        self.joined = 0
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None
        self.finish: str | None = None

    def hold(self, delta: dict[str, Any]) -> None:
        for part in delta.get("tool_calls") or []:
            call = self.calls.setdefault(
                part.get("index", len(self.calls)),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] = part.get("id") or call["id"]
            call["type"] = part.get("type") or call["type"]
            _merge_function(call["function"], part.get("function") or {})
        if delta.get("function_call"):
            self.function_call = self.function_call or {"name": "", "arguments": ""}
            _merge_function(self.function_call, delta["function_call"])

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.text) or None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [self.calls[k] for k in sorted(self.calls)]
        if self.function_call:
            message["function_call"] = self.function_call
        return message


def _streamed(choice: _Choice) -> str:
    """Its text streamed so far, joining only the pieces added since the last call: every
    labeling while the stream is on asks, once per item (guard.inflight)."""
    if choice.joined < len(choice.sent):
        choice.streamed += "".join(choice.sent[choice.joined :])
        choice.joined = len(choice.sent)
    return choice.streamed


def _merge_function(into: dict[str, str], part: dict[str, Any]) -> None:
    # Providers send the name once (some repeat it whole); arguments arrive in pieces.
    if part.get("name") and not into["name"]:
        into["name"] = part["name"]
    into["arguments"] += part.get("arguments") or ""


class HeldStream:
    def __init__(self, *, hold_text: bool = False) -> None:
        self._hold_text = hold_text
        self.held_keys = (*_HELD_DELTA_KEYS, "content") if hold_text else _HELD_DELTA_KEYS
        self.envelope: dict[str, Any] = {}
        self.choices: dict[int, _Choice] = {}
        self.tail: list[Chunk] = []  # choice-less chunks (usage), sent last

    def feed(self, chunk: Chunk) -> Chunk | None:
        """The part of ``chunk`` to send now, or None."""
        if not self.envelope:
            self.envelope = {k: chunk[k] for k in _ENVELOPE if k in chunk}
        choices = chunk.get("choices")
        if not choices:
            self.tail.append(chunk)
            return None
        passed: list[dict[str, Any]] = []
        held_any = False
        for raw in choices:
            index = raw.get("index", 0)
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = _Choice()
            delta = raw.get("delta") or {}
            content = delta.get("content")
            choice.role = delta.get("role") or choice.role
            if content:
                choice.text.append(content)
            if delta.get("refusal"):
                choice.refusal.append(delta["refusal"])
            # A text delta (the bulk of a stream) is tested without a loop over the held keys.
            if not (
                raw.get("finish_reason")
                or delta.get("tool_calls")
                or delta.get("function_call")
                or (content and self._hold_text)
            ):
                choice.sent.append(content or "")
                passed.append(raw)
                continue
            held_any = True
            choice.hold(delta)
            choice.finish = raw.get("finish_reason") or choice.finish
            rest = {k: v for k, v in delta.items() if k not in self.held_keys and v is not None}
            if rest:
                choice.sent.append(rest.get("content") or "")
                passed.append({**raw, "delta": rest, "finish_reason": None})
        if not held_any:
            return chunk
        return {**chunk, "choices": passed} if passed else None

    def sent_texts(self) -> list[str]:
        """Each choice's text streamed so far (before any verdict), in index order."""
        return [_streamed(c) for _, c in sorted(self.choices.items())]

    def assembled(self) -> dict[str, Any]:
        """The whole answer as a non-streamed ChatCompletion body, for the guard."""
        body: dict[str, Any] = {**self.envelope, "object": "chat.completion"}
        body["choices"] = [
            {"index": i, "message": c.message(), "finish_reason": c.finish}
            for i, c in sorted(self.choices.items())
        ]
        usage = next((t["usage"] for t in self.tail if t.get("usage")), None)
        if usage is not None:
            body["usage"] = usage
        return body

    def closing_chunks(self, guarded: dict[str, Any], extension: dict[str, Any]) -> list[Chunk]:
        """What is still to send once the guard has answered."""
        out: list[Chunk] = []
        envelope = {**self.envelope, "object": "chat.completion.chunk"}
        by_index = {c.get("index", 0): c for c in guarded.get("choices") or []}
        for i, choice in sorted(self.choices.items()):
            message = (by_index.get(i) or {}).get("message") or {}
            finish = (by_index.get(i) or {}).get("finish_reason")
            for delta in _closing_deltas(choice, message):
                out.append(_chunk(envelope, i, delta, None))
            finish = _finish_reason(finish or choice.finish, message)
            out.append(_chunk(envelope, i, {}, finish))
        if not out:
            out.append({**envelope, "choices": []})
        out[-1]["labelgate"] = extension
        return out + self.tail


def _chunk(
    envelope: dict[str, Any], index: int, delta: dict[str, Any], finish: str | None
) -> Chunk:
    return {**envelope, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def _closing_deltas(choice: _Choice, message: dict[str, Any]) -> list[dict[str, Any]]:
    sent = _streamed(choice)
    content = message.get("content") or ""
    if not content.startswith(sent):
        raise GuardEditError("the guard changed text that was already streamed")
    deltas: list[dict[str, Any]] = []
    if len(content) > len(sent):
        deltas.append({"content": content[len(sent) :]})
    calls = message.get("tool_calls") or []
    if calls:
        deltas.append({"tool_calls": [{"index": k, **call} for k, call in enumerate(calls)]})
    if message.get("function_call"):
        deltas.append({"function_call": message["function_call"]})
    return deltas


def _finish_reason(finish: str | None, message: dict[str, Any]) -> str:
    if message.get("tool_calls"):
        return "tool_calls"
    if message.get("function_call"):
        return "function_call"
    if finish in (None, "tool_calls", "function_call"):
        return "stop"  # the calls were taken away: the turn ends with the guard's message
    return finish
