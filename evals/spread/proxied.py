"""How the agents of a spread simulation reach their model: a ``Channel``.

Every model call of a simulation (each discussion message, each answer to the questions,
each fresh agent's answer from the memory) is a list of ``Turn``s sent for one agent:

- ``DirectChannel``: straight to the model (no defense, vigilance, supervisor);
- ``ProxyChannel``: through an embedded labelgate proxy (the labelgate defenses), with the
  agent's id in ``X-Labelgate-Agent`` and, in the ``labelgate`` extension field, who wrote
  each delivered message (``agent_message`` with its author as ``source``) and which notes
  come from the chat memory (``document`` from ``chat-memory``). The proxy labels each item
  (source rules, re-identification of text it has seen), screens it at the reader's
  ``prompt`` sink (mark, redact or withhold), calls the model with what is left, labels and
  fingerprints the answer. The channel reads the answer's label and the prompt decisions back
  from the response headers: the eval's cost metrics come from them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, Field

from labelgate.evals.models import CachedModel
from labelgate.evals.spread.defenses import (
    POLICY,
    QUARANTINE_SOURCE,
    Defense,
    LabelgateAction,
    LabelgateDefense,
    Propagation,
    RouteAction,
    quarantine_data,
)
from labelgate.guard.models import ChatModel

AGENT_HEADER = "X-Labelgate-Agent"
MEMORY_SOURCE = "chat-memory"


class Turn(BaseModel):
    """One message of a prompt; ``author`` / ``memory`` say where a delivered text is from."""

    role: Literal["system", "user"]
    content: str
    author: str | None = None  # the agent id that wrote a delivered message
    memory: bool = False  # a note retrieved from the chat memory
    post: int | None = None  # the simulation's index of the message (not sent)

    def message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class Screened(BaseModel):
    """The proxy's decision on one message of a prompt, before the model read it."""

    action: RouteAction
    rule: str | None = None
    reason: str = ""
    label: dict[str, Any] | None = None

    @property
    def tainted(self) -> bool:
        return QUARANTINE_SOURCE in (self.label or {}).get("sources", [])


class Said(BaseModel):
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit: bool = False
    label: dict[str, Any] | None = None  # the answer's label (through the proxy)
    screened: dict[int, Screened] = Field(default_factory=dict)  # message index -> decision


Channel = Callable[[str, list[Turn], int], Awaitable[Said]]  # agent, turns, max_tokens


class DirectChannel:
    """The model itself; with ``agents``, the model each agent talks to (a sample's guard
    when the model is behind a labelgate proxy: ``evals.sample_guard``)."""

    def __init__(
        self,
        model: ChatModel,
        params: dict[str, Any] | None = None,
        agents: Callable[[str], ChatModel] | None = None,
    ) -> None:
        self.model, self.params, self.agents = model, params or {}, agents

    async def __call__(self, agent: str, turns: list[Turn], max_tokens: int) -> Said:
        messages = [t.message() for t in turns]
        params = self.params | {"max_tokens": max_tokens}
        hit = False
        if self.agents is not None:
            result = await self.agents(agent).chat(messages, **params)
        elif isinstance(self.model, CachedModel):
            result, hit = await self.model.chat_cached(messages, **params)
        else:
            result = await self.model.chat(messages, **params)
        return Said(
            text=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cache_hit=hit,
        )


def message_annotations(turns: list[Turn]) -> dict[str, dict[str, str]]:
    """The extension's per-message annotations: who wrote each delivered text."""
    notes: dict[str, dict[str, str]] = {}
    for i, turn in enumerate(turns):
        if turn.memory:
            notes[str(i)] = {"kind": "document", "source": MEMORY_SOURCE}
        elif turn.author is not None:
            notes[str(i)] = {"kind": "agent_message", "source": turn.author}
    return notes


def route_action(decision: dict[str, Any]) -> RouteAction:
    """A prompt decision as the eval counts it: withheld, redacted, marked or passed."""
    action = decision.get("action")
    if action in ("deny", "ask"):
        return "block"
    if action == "redact":
        return "redact"
    return "mark" if decision.get("notice") else "pass"


def screened_of(decisions: list[dict[str, Any]]) -> dict[int, Screened]:
    """``prompt:<message>`` decisions by message index (a text part's ``.k`` is dropped)."""
    found: dict[int, Screened] = {}
    for d in decisions:
        target = str(d.get("target", ""))
        if not target.startswith("prompt:"):
            continue
        index = int(target.removeprefix("prompt:").split(".")[0])
        found[index] = Screened(
            action=route_action(d), rule=d.get("rule"), reason=d.get("reason", ""), label=d["label"]
        )
    return found


class ProxyChannel:
    """Each call over HTTP to a guarded proxy, as the agent it is for."""

    def __init__(self, base_url: str, model: str, params: dict[str, Any] | None = None) -> None:
        self.base_url, self.model = base_url.rstrip("/"), model
        self.params = params or {}
        self.client = httpx.AsyncClient(timeout=600)

    async def __call__(self, agent: str, turns: list[Turn], max_tokens: int) -> Said:
        body = {
            "model": self.model,
            "messages": [t.message() for t in turns],
            "max_tokens": max_tokens,
            **self.params,
            "labelgate": {"messages": message_annotations(turns)},
        }
        response = await self.client.post(
            f"{self.base_url}/chat/completions", json=body, headers={AGENT_HEADER: agent}
        )
        response.raise_for_status()
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Said(
            text=str(choice["message"].get("content") or ""),
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            label=json.loads(response.headers["x-labelgate-label"]),
            screened=screened_of(json.loads(response.headers.get("x-labelgate-decisions", "[]"))),
        )

    async def aclose(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def labelgate_proxy(
    action: LabelgateAction,
    model: ChatModel,
    state_dir: Path,
    *,
    propagation: Propagation = "similarity",
    policy_path: str | Path = POLICY,
) -> AsyncIterator[str]:
    """An embedded guarded proxy serving ``model`` under the quarantine policy (``action``);
    yields its base URL. Its audit store and fingerprints live in ``state_dir``."""
    from labelgate.proxy.embedded import guarded_proxy  # the gateway loads only when used

    policy = state_dir / f"spread-quarantine-{action}.yaml"
    policy.write_text(yaml.safe_dump(quarantine_data(action, policy_path)), encoding="utf-8")
    settings = {"propagator": propagation, "deny_mode": "replace"}
    inner = model.inner if isinstance(model, CachedModel) else model  # the proxy calls it
    with guarded_proxy(
        inner.name, policy=policy, state_dir=state_dir, models={inner.name: inner}, guard=settings
    ) as url:
        yield url


@asynccontextmanager
async def open_channel(
    defense: Defense,
    model: ChatModel,
    *,
    propagation: Propagation = "similarity",
    params: dict[str, Any] | None = None,
    state_dir: Path | None = None,
    agents: Callable[[str], ChatModel] | None = None,
) -> AsyncIterator[Channel]:
    """The channel a simulation under ``defense`` talks through (one proxy per simulation:
    its fingerprint store holds only this discussion). ``agents``: the model each agent
    talks to without a labelgate defense (the sample's guard, behind a proxy)."""
    if not isinstance(defense, LabelgateDefense):
        yield DirectChannel(model, params, agents)
        return
    with tempfile.TemporaryDirectory(prefix="spread-") as scratch:
        state = state_dir or Path(scratch)
        async with labelgate_proxy(defense.action, model, state, propagation=propagation) as url:
            channel = ProxyChannel(url, model.name, params)
            try:
                yield channel
            finally:
                await channel.aclose()
