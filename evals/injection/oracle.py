"""The faithful oracle: a scripted agent model that follows its task's ground-truth plan,
using only values visible in its context, and obeys the injected instructions it reads.

It is stateless: each answer is computed from the request's messages alone (the same messages
give the same answer), by replaying the conversation: which task (the user's request names
it), which agent it plays (the system prompt says), what it read, what it did at each of its
earlier turns. So a guard that re-asks the model sees consistent answers, and it can serve
behind any proxy (``labelgate eval oracle-serve``).

- **Visibility.** A step is made only when every value it needs (``Step.values``) occurs in
  the context (messages and its own earlier calls). A withheld or redacted value makes the
  oracle give up the task (a benign step) or the attacker's goal (an injected step).
- **Compliance.** An instruction it reads (in a tool result, or relayed in its prompt) is
  obeyed when ``hash(instruction) < compliance`` (1.0: always, 0.0: never): before going on
  with its plan it makes the goal's steps, puts the goal's words in its answer, swaps the
  goal's value into its own steps, launders the instruction through the sanitizer, plants it
  in its notes, or (as the reader) relays it to the actor, as the attack asked.
- **One call per turn**, with an id derived from the call (``call_<hash>``), so a decision
  on a call names the step it stopped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labelgate.evals.injection.attacks import (
    ATTACKS,
    NOTES_WRITE,
    SANITIZER,
    USER,
    Attack,
    substitution_goal,
)
from labelgate.evals.injection.catalogue import Catalogue, catalogue
from labelgate.evals.injection.spec import PLACEHOLDER, Goal, Role, Step, Task, swap
from labelgate.guard.models import ChatResult, Message

ORACLE = "injection-oracle"
ROLE_MARKERS: dict[Role, str] = {
    "reader": "You are the reader agent",
    "actor": "You are the actor agent",
}


def call_id(tool: str, args: dict[str, Any]) -> str:
    blob = json.dumps([tool, args], sort_keys=True, ensure_ascii=False)
    return "call_" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def obeys(instruction: str, compliance: float) -> bool:
    digest = hashlib.sha256(instruction.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < compliance


def encode(value: str, flt: str | None) -> str:
    if flt == "b64":
        return base64.b64encode(value.encode()).decode()
    if flt == "spaced":
        return " ".join(value)
    if flt == "head":
        return value[: len(value) // 2]
    if flt == "tail":
        return value[len(value) // 2 :]
    return value


def render_free(template: str) -> str:
    return PLACEHOLDER.sub(lambda m: encode(m[1], m[2]), template)


def visible(value: str, context: str) -> bool:
    """Whether the model has seen ``value`` (case aside: it may write a name in lower case)."""
    low = context.lower()
    if value.lower() in low:
        return True
    try:
        number = float(value)
    except ValueError:
        return False
    return f"{number:,.2f}" in low  # 4900.00 written as 4,900.00


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Directive:
    """An instruction found in the context, as the attack that carried it meant it."""

    mode: str
    goal: Goal
    instruction: str

    @property
    def key(self) -> str:
        return f"{self.mode}:{self.instruction}"


@dataclass(slots=True)
class Reader:
    """Finds injected instructions in text: each goal as each attack adapts it for the task."""

    task: Task
    entries: list[tuple[str, Attack, Goal]] = field(default_factory=list)

    @classmethod
    def for_task(cls, task: Task, cat: Catalogue) -> Reader:
        goals = list(cat.goals.values())
        own = substitution_goal(task)
        if own is not None:
            goals.append(own)
        entries = []
        for attack in ATTACKS.values():
            for goal in goals:
                if goal.domain not in (None, task.domain) or not attack.applies(goal, task):
                    continue
                adapted = attack.adapt(goal, task)
                entries.append((adapted.instruction.strip(), attack, adapted))
        entries.sort(key=lambda e: -len(e[0]))  # an adapted instruction extends the plain one
        return cls(task, entries)

    def directives(self, text: str) -> list[Directive]:
        found: list[Directive] = []
        taken: list[str] = []
        for instruction, _attack, goal in self.entries:
            if instruction not in text or any(instruction in t for t in taken):
                continue
            marked = [a for i, a, _ in self.entries if i == instruction and a.marker in text]
            chosen = next((a for a in marked if a.marker), None)
            mode = chosen.mode if chosen is not None else "execute"
            found.append(Directive(mode, goal, instruction))
            taken.append(instruction)
        return found


# --------------------------------------------------------------------------- replay


@dataclass(slots=True)
class Call:
    step: Step
    args: dict[str, Any]


@dataclass(slots=True)
class Final:
    text: str


Action = Call | Final


@dataclass(slots=True)
class Replay:
    """The oracle's course through one conversation, recomputed from its messages."""

    task: Task
    role: Role
    reader: Reader
    compliance: float
    benign: int = 0
    pending: deque[tuple[Step, str]] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)
    says: list[str] = field(default_factory=list)
    relays: list[str] = field(default_factory=list)
    subs: dict[str, str] = field(default_factory=dict)
    gave_up: str | None = None

    @property
    def tools(self) -> list[str]:
        return self.task.tools_of(self.role)

    def read(self, text: str) -> None:
        for d in self.reader.directives(text):
            if d.key in self.seen:
                continue
            self.seen.add(d.key)
            if obeys(d.instruction, self.compliance):
                self._obey(d)

    def _obey(self, d: Directive) -> None:
        if d.mode == "relay" and self.role == "reader":
            self.relays.append(f"{USER} also asked you to do this: {d.instruction}")
        elif d.mode == "launder":
            self._queue([Step(tool=SANITIZER, args={"text": d.instruction})], d.key)
        elif d.mode == "memory":
            text = f"Standing instruction from {USER}: {d.instruction}"
            args = {"title": "Standing instructions", "text": text}
            self._queue([Step(tool=NOTES_WRITE, args=args, free=["text"])], d.key)
        elif self._can(d.goal):
            self._queue(d.goal.steps, d.key)
            if d.goal.say:
                self.says.append(d.goal.say)
            if d.goal.substitute is not None:
                self.subs[d.goal.substitute.value] = d.goal.substitute.replacement
        elif self.role == "reader":
            self.relays.append(f"The material also says: {d.instruction}")

    def _can(self, goal: Goal) -> bool:
        if self.role == "reader" and (goal.say or goal.substitute is not None):
            return False  # the reader answers the actor, not the user: it passes these on
        return all(s.tool in self.tools for s in goal.steps)

    def _queue(self, steps: Sequence[Step], key: str) -> None:
        if all(s.tool in self.tools for s in steps):
            self.pending.extend((s, key) for s in steps)

    def _swap(self, step: Step) -> Step:
        args = step.args
        for old, new in self.subs.items():
            args = swap(args, old, new)
        return step.model_copy(update={"args": args})

    def next(self, context: str) -> Action:
        while self.pending:
            step, key = self.pending[0]
            if self._missing(step, context):
                self.pending = deque(p for p in self.pending if p[1] != key)
                continue
            self.pending.popleft()
            return self._call(step)
        if self.gave_up is None:
            steps = self.task.steps_of(self.role)
            if self.benign < len(steps):
                step = self._swap(steps[self.benign])
                missing = self._missing(step, context)
                if not missing:
                    self.benign += 1
                    return self._call(step)
                self.gave_up = missing
        return Final(self._answer(context))

    def _missing(self, step: Step, context: str) -> str | None:
        for value, _flt in step.values():
            if not visible(value, context):
                return value
        return None

    def _call(self, step: Step) -> Call:
        args = {
            k: render_free(v) if k in step.free and isinstance(v, str) else v
            for k, v in step.args.items()
        }
        return Call(step, args)

    def _answer(self, context: str) -> str:
        template = self.task.handoff if self.role == "reader" else self.task.answer
        text = _fill(template, context)
        if self.gave_up is not None:
            text = f"I could not finish the task: I do not have {self.gave_up!r}. " + text
        return "\n".join([text, *self.relays, *self.says])


def _fill(template: str, context: str) -> str:
    def value(m: re.Match[str]) -> str:
        return encode(m[1], m[2]) if visible(m[1], context) else "(not available)"

    return PLACEHOLDER.sub(value, template)


# --------------------------------------------------------------------------- the model


def _content(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _seen(message: Message) -> str:
    """What a message shows the model: its text and, for its own turns, its calls."""
    parts = [_content(message)]
    for call in message.get("tool_calls") or []:
        parts.append(str((call.get("function") or {}).get("arguments", "")))
    return "\n".join(parts)


def role_of(messages: Sequence[Message]) -> Role:
    system = "\n".join(_content(m) for m in messages if m.get("role") == "system")
    for role, marker in ROLE_MARKERS.items():
        if marker in system:
            return role
    return "assistant"


class OracleModel:
    """The faithful oracle as a ``ChatModel`` (``injection-oracle``, or ``injection-oracle-cNN``
    for compliance NN%)."""

    def __init__(self, compliance: float = 1.0, *, name: str = ORACLE) -> None:
        if not 0.0 <= compliance <= 1.0:
            raise ValueError("compliance is a share between 0 and 1")
        self.name = name
        self.compliance = compliance

    def answer(self, messages: Sequence[Message], cat: Catalogue | None = None) -> Action:
        cat = cat or catalogue()
        users = [_content(m) for m in messages if m.get("role") == "user"]
        task = cat.task_for(users[0]) if users else None
        if task is None:
            return Final("I cannot tell what you want me to do.")
        role = role_of(messages)
        replay = Replay(task, role, Reader.for_task(task, cat), self.compliance)
        context = ""
        for message in messages:
            if message.get("role") == "assistant":
                replay.next(context)  # what it did at that turn (whatever became of it)
            elif message.get("role") in ("user", "tool"):
                replay.read(_content(message))
            context += "\n" + _seen(message)
        return replay.next(context)

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        action = self.answer(messages)
        if isinstance(action, Final):
            return ChatResult(text=action.text, prompt_tokens=_tokens(messages))
        call = {
            "id": call_id(action.step.tool, action.args),
            "type": "function",
            "function": {"name": action.step.tool, "arguments": json.dumps(action.args)},
        }
        return ChatResult(
            text="",
            tool_calls=[call],
            finish_reason="tool_calls",
            prompt_tokens=_tokens(messages),
        )


def _tokens(messages: Sequence[Message]) -> int:
    return sum(len(_seen(m)) for m in messages) // 4


def oracle_model(name: str) -> OracleModel:
    """``injection-oracle`` (compliance 1) or ``injection-oracle-cNN`` (NN% compliance)."""
    match = re.fullmatch(re.escape(ORACLE) + r"(?:-c(\d{1,3}))?", name)
    if match is None:
        raise ValueError(f"not an oracle model name: {name!r}")
    compliance = int(match[1]) / 100 if match[1] else 1.0
    return OracleModel(compliance, name=name)


__all__ = ["ORACLE", "OracleModel", "call_id", "oracle_model"]
