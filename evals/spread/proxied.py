"""The labelgate defense with every discussion message routed through an embedded guarded
proxy: the speaker's model call goes over HTTP with its agent id (``X-Labelgate-Agent``), the
proxy labels the request (source rules, re-identification in its own fingerprint store),
labels and decides the answer for a peer, and the defense reads the label and the decision
back from the response headers. The memory write, which the proxy never sees, is decided on
that label by the same policy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import yaml

from evals.spread.defenses import (
    POLICY,
    QUARANTINE_SOURCE,
    LabelgateAction,
    LabelgateDefense,
    Post,
    Propagation,
    Routing,
    quarantine_data,
)
from guard.models import ChatModel
from proxy.embedded import guarded_proxy

AGENT_HEADER = "X-Labelgate-Agent"


@runtime_checkable
class Speaker(Protocol):
    """A defense that carries the speaker's own model call (the simulation asks it to)."""

    async def speak(
        self, speaker: str, recipients: list[str], messages: list[dict[str, str]], max_tokens: int
    ) -> str: ...


class ProxiedLabelgateDefense(LabelgateDefense):
    """Labels come from the proxy; the hand-off and memory sinks are decided here on that
    label. The proxy decides the answer for its caller (no hand-off, so it passes unchanged):
    the speaker must read its own words, and a peer's verdict comes from the same policy."""

    def __init__(self, action: LabelgateAction, base_url: str, model: str) -> None:
        super().__init__(action)  # its guard only decides sinks, on the proxy's labels
        self.base_url, self.model = base_url.rstrip("/"), model
        self.client = httpx.AsyncClient(timeout=120)
        self._labels: dict[tuple[str, str], dict[str, Any]] = {}

    async def speak(
        self, speaker: str, recipients: list[str], messages: list[dict[str, str]], max_tokens: int
    ) -> str:
        # The system prompt is the speaker's own message (the quarantine source rule matches
        # it); what it read arrives in the user message, to be re-identified by the proxy.
        ext = {"messages": {"0": {"kind": "agent_message"}}}
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        response = await self.client.post(
            f"{self.base_url}/chat/completions",
            json=body | {"labelgate": ext},
            headers={AGENT_HEADER: speaker},
        )
        response.raise_for_status()
        text = str(response.json()["choices"][0]["message"].get("content") or "").strip()
        self._labels[(speaker, text)] = json.loads(response.headers["x-labelgate-label"])
        return text

    async def route(self, post: Post) -> Routing:
        label = self.lattice.parse(self._labels.pop((post.speaker, post.text)))
        if QUARANTINE_SOURCE in label.sources and not post.speaker.startswith("quarantine-"):
            self.stats.reidentified += 1
        return self.decide_all(post, label)

    async def aclose(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def proxied_labelgate(
    action: LabelgateAction,
    model: ChatModel,
    state_dir: Path,
    *,
    propagation: Propagation = "similarity",
    policy_path: str | Path = POLICY,
) -> AsyncIterator[ProxiedLabelgateDefense]:
    """An embedded guarded proxy serving ``model`` under the quarantine policy (``action``),
    with a defense that routes every discussion message through it."""
    policy = state_dir / f"spread-quarantine-{action}.yaml"
    policy.write_text(yaml.safe_dump(quarantine_data(action, policy_path)), encoding="utf-8")
    settings = {"propagator": propagation, "deny_mode": "replace"}
    with guarded_proxy(
        model.name, policy=policy, state_dir=state_dir, models={model.name: model}, guard=settings
    ) as url:
        defense = ProxiedLabelgateDefense(action, url, model.name)
        try:
            yield defense
        finally:
            await defense.aclose()
