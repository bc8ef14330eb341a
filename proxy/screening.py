"""The ``prompt`` sink in the proxy: decide each input item before the model reads it.

When the policy has sink rules of ``kind: prompt``, every labeled input item of a chat
request is decided for the calling agent (``Guard.screen``) before the request goes upstream:

- ``allow`` / ``log``: the item passes; a decision with a ``notice`` puts it before the text
  (a visible mark the model reads);
- ``redact``: the item's redaction targets are replaced by the engine's marker (the whole
  text when the rule names no patterns);
- ``deny``: the text is withheld and replaced by a note the model can read,
  ``[labelgate] a message from SOURCE was withheld: REASON`` (with ``deny_mode: error`` the
  request fails with 403 instead);
- ``ask``: held for a person like any other ``ask``, then allow or deny.

A withheld or wholly redacted item is no longer an input of the call: the answer's label does
not inherit it (a model cannot be influenced by text it never saw). A partly redacted item
stays an input, with its label, since its rest still reaches the model. A tool call the agent
made earlier (rendered in an assistant message) cannot be rewritten: a deny or redact of one
refuses the request. Without prompt rules nothing here runs (``Guard.screens_prompts``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, cast

from labelgate.guard.engine import Guard
from labelgate.guard.items import LabeledItem
from labelgate.guard.policy import Action, Decision
from labelgate.proxy.approvals import ApprovalQueue
from labelgate.proxy.context import RequestContext
from labelgate.proxy.hook import PolicyDenied
from labelgate.proxy.schemas import ChatCompletionRequest, ChatMessage, TextPart

NOTE_PREFIX = "[labelgate]"  # the same prefix as the hook's notes about tool calls
STATE_KEY = "screened"
EAGER_KEY = "screen_eager"  # a marked input asks for the precise (permissive) answer label

PartKind = Literal["content", "part", "tool_call", "empty"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an input item's text is in the request: message index and which text of it."""

    message: int
    kind: PartKind
    index: int = 0  # the content part or tool call index

    @property
    def target(self) -> str:
        """The decision's target in headers and the audit store: ``prompt:<message>``."""
        sub = f".{self.index}" if self.kind in ("part", "tool_call") else ""
        return f"prompt:{self.message}{sub}"


@dataclass(slots=True)
class Screened:
    position: Position
    item: LabeledItem
    decision: Decision

    @property
    def target(self) -> str:
        return self.position.target

    @property
    def notice(self) -> str | None:
        passing = self.decision.action in (Action.ALLOW, Action.LOG)
        return self.decision.notice if passing else None

    def summary(self) -> dict[str, Any]:
        """As in ``X-Labelgate-Decisions``, plus the item's label and the notice shown."""
        d = self.decision
        return {
            "id": d.id,
            "target": self.target,
            "action": d.action.value,
            "rule": d.rule,
            "reason": d.reason,
            "label": self.item.label.to_dict(),
            "notice": self.notice,
        }


def positions(messages: list[ChatMessage]) -> list[tuple[Position, str]]:
    """Each input item's position and text, in the order the hook labels them."""
    return [found for m, msg in enumerate(messages) for found in message_positions(m, msg)]


def message_positions(m: int, msg: ChatMessage) -> list[tuple[Position, str]]:
    """The texts of message ``m`` that become input items: its content text, its text parts,
    then its tool calls; blank texts skipped; a message without text is one empty item. The
    one definition of an item's place, for labeling and for screening alike."""
    here: list[tuple[Position, str]] = []
    if isinstance(msg.content, str):
        here.append((Position(m, "content"), msg.content))
    elif isinstance(msg.content, list):
        here += [
            (Position(m, "part", k), str(p.get("text", "")))
            for k, p in enumerate(msg.content)
            if p.get("type") == "text"
        ]
    here += [
        (Position(m, "tool_call", k), f"{tc.function.name}({tc.function.arguments})")
        for k, tc in enumerate(msg.tool_calls or [])
    ]
    return [(pos, text) for pos, text in here if text.strip()] or [(Position(m, "empty"), "")]


async def screen_request(
    guard: Guard,
    ctx: RequestContext,
    request: ChatCompletionRequest,
    items: list[LabeledItem],
    *,
    approvals: ApprovalQueue,
    deny_mode: str = "replace",
) -> tuple[ChatCompletionRequest, list[LabeledItem]]:
    """The request to send upstream and the items that remain inputs of the call."""
    if not guard.screens_prompts:
        return request, items
    where = positions(request.messages)
    texts = [text for _, text in where]
    if texts != [item.text for item in items]:  # fail closed: never screen the wrong text
        raise RuntimeError("the input items do not line up with the request's messages")
    decisions = guard.screen(items, agent=ctx.caller.agent_id)
    screened = [Screened(p, i, d) for (p, _), i, d in zip(where, items, decisions, strict=True)]
    for s in screened:
        if s.decision.action is Action.ASK:
            verdict = await approvals.wait(ctx, s.target, s.decision)
            s.decision.action = Action.ALLOW if verdict.approved else Action.DENY
            s.decision.reason = f"{s.decision.reason} [{verdict.summary}]"
    ctx.state[STATE_KEY] = screened
    denied = [s for s in screened if s.decision.action is Action.DENY]
    if denied and deny_mode == "error":
        raise PolicyDenied(denied[0].decision.reason, [s.summary() for s in denied])
    messages = list(request.messages)
    kept: list[LabeledItem] = []
    for s in screened:
        item = _enforce(s, messages)
        if item is not None:
            kept.append(item)
    ctx.state[EAGER_KEY] = any(s.notice for s in screened)
    return request.model_copy(update={"messages": messages}), kept


def _enforce(s: Screened, messages: list[ChatMessage]) -> LabeledItem | None:
    """Rewrite the item's text in ``messages`` (copies); the item if it is still an input."""
    action, item = s.decision.action, s.item
    if action in (Action.ALLOW, Action.LOG):
        if s.notice:
            sep = "" if s.notice[-1].isspace() else " "
            rewrite_position(messages, s.position, f"{s.notice}{sep}{item.text}")
        return item
    if s.position.kind == "tool_call":
        raise PolicyDenied(
            f"a tool call in the prompt cannot be rewritten: {s.decision.reason}", [s.summary()]
        )
    if action is Action.REDACT:
        text = str(s.decision.redact_arguments({"content": item.text})["content"])
        rewrite_position(messages, s.position, text)
        whole = not s.decision.redactions or any(not t.patterns for t in s.decision.redactions)
        return None if whole else dataclasses.replace(item, text=text)
    source = item.name or f"the {item.role or 'client'}"
    rewrite_position(
        messages,
        s.position,
        f"{NOTE_PREFIX} a message from {source} was withheld: {s.decision.reason}",
    )
    return None


def rewrite_position(messages: list[ChatMessage], pos: Position, text: str) -> None:
    """Replace the text at ``pos`` (a copy of its message: the request is not changed)."""
    msg = messages[pos.message].model_copy(deep=True)
    if pos.kind == "part" and isinstance(msg.content, list):
        part = cast(TextPart, msg.content[pos.index])  # a part Position is always a text part
        part["text"] = text
    else:
        msg.content = text
    messages[pos.message] = msg


# ---------------------------------------------------------------- the record


def screened(ctx: RequestContext) -> list[Screened]:
    found: list[Screened] = ctx.state.get(STATE_KEY, [])
    return found


def summaries(ctx: RequestContext) -> list[dict[str, Any]]:
    return [s.summary() for s in screened(ctx)]
