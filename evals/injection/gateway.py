"""How the agents of a sample reach their model: directly, or through a labelgate proxy as a
named agent, keeping the guard's decisions on each call.

Through a proxy (``--via-proxy`` or the in-process ``--guard-policy`` gateway) each call is an
OpenAI chat request with the agent's name in ``X-Labelgate-Agent`` (the proxy's per-agent
identity when it has no keys; with keys, the key names the agent). The guard's decisions come
back in ``X-Labelgate-Decisions``; each is kept with the agent, the call's number and, for a
``prompt:N`` decision, which message it was about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel

from labelgate.evals.models import CachedModel, ProxyModel
from labelgate.guard.models import ChatModel, ChatResult, Message, ModelError

AGENT_HEADER = "X-Labelgate-Agent"
DECISIONS_HEADER = "x-labelgate-decisions"
GUARD_CALLS_HEADER = "x-labelgate-guard-calls"  # the guard's own model calls for a request
_PARAMS = ("temperature", "max_tokens", "seed", "tools")


class GuardDecision(BaseModel):
    """One decision of the guard on one model call of a sample."""

    agent: str
    call: int  # the sample's model call it came with (1-based)
    target: str  # a tool-call id, "response", or "prompt:N"
    action: str
    rule: str | None = None
    reason: str = ""
    about: str = ""  # for prompt:N, the message (role and tool name) it screened


class GuardLog(BaseModel):
    decisions: list[GuardDecision] = []
    calls: int = 0
    guard_calls: int = 0  # model calls the guard made (propagator re-queries, replays)


def _about(target: str, messages: Sequence[Message]) -> str:
    if not target.startswith("prompt:"):
        return ""
    index = int(target.removeprefix("prompt:").split(".")[0])
    if not 0 <= index < len(messages):
        return "?"
    message = messages[index]
    name = message.get("name")
    return f"{message.get('role')} {name}" if name else str(message.get("role"))


class GatewayModel:
    """A ``ChatModel`` that calls a labelgate proxy as ``agent`` and logs its decisions."""

    def __init__(
        self, proxy: ProxyModel, agent: str, log: GuardLog, client: httpx.AsyncClient
    ) -> None:
        self.name = proxy.served
        self.proxy, self.agent, self.log, self.client = proxy, agent, log, client

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        body = {"model": self.proxy.served, "messages": list(messages)}
        body |= {k: params[k] for k in _PARAMS if params.get(k) is not None}
        headers = {AGENT_HEADER: self.agent, "Authorization": f"Bearer {self.proxy.api_key}"}
        url = f"{self.proxy.base_url}/chat/completions"
        response = await self.client.post(url, json=body, headers=headers)
        self.log.calls += 1
        self.log.guard_calls += int(response.headers.get(GUARD_CALLS_HEADER) or 0)
        self._keep(response, messages)
        if response.status_code == 403:  # deny_mode: error, the whole request refused
            return ChatResult(text=f"[refused by the guard] {_error(response)}")
        if _kind(response) == "guard_error":  # the guard failed closed: the agent is stopped
            self._failed(response)
            return ChatResult(text=f"[the guard failed closed] {_error(response)}")
        if response.status_code >= 400:
            raise ModelError(f"proxy answered {response.status_code}: {_error(response)}")
        return _result(response.json())

    def _keep(self, response: httpx.Response, messages: Sequence[Message]) -> None:
        for d in json.loads(response.headers.get(DECISIONS_HEADER) or "[]"):
            target = str(d.get("target", ""))
            self.log.decisions.append(
                GuardDecision(
                    agent=self.agent,
                    call=self.log.calls,
                    target=target,
                    action=str(d.get("action")),
                    rule=d.get("rule"),
                    reason=str(d.get("reason", "")),
                    about=_about(target, messages),
                )
            )

    def _failed(self, response: httpx.Response) -> None:
        self.log.decisions.append(
            GuardDecision(
                agent=self.agent,
                call=self.log.calls,
                target="request",
                action="error",
                rule="guard_error",
                reason=_error(response),
            )
        )


def _kind(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return ""


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _result(data: dict[str, Any]) -> ChatResult:
    choice = data["choices"][0]
    message = choice.get("message") or {}
    usage = data.get("usage") or {}
    return ChatResult(
        text=str(message.get("content") or ""),
        tool_calls=list(message.get("tool_calls") or []),
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
    )


class Route:
    """The model each agent of one sample talks to, and the guard's log for the sample."""

    def __init__(self, model: ChatModel) -> None:
        inner = model.inner if isinstance(model, CachedModel) else model
        self.model = model
        self.proxy = inner if isinstance(inner, ProxyModel) else None
        self.log = GuardLog()
        self._client: httpx.AsyncClient | None = None

    @property
    def guarded(self) -> bool:
        return self.proxy is not None

    def agent(self, name: str) -> ChatModel:
        if self.proxy is None:
            return self.model
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=600)
        return GatewayModel(self.proxy, name, self.log, self._client)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
