"""The seam where the guard plugs into the proxy.

The proxy calls ``before_call`` once the request is authenticated and validated, and
``after_call`` with the whole answer before anything of it that matters leaves:

- non-streamed: ``after_call`` sees the ChatCompletion body and may rewrite it (drop tool calls
  and say why in the content, redact text); its label and decisions become headers;
- streamed: text deltas go to the client as they come, tool-call deltas are held. At the end
  the proxy assembles the same ChatCompletion body (``ctx.stream`` is True) and calls
  ``after_call``. Held tool calls that survive are then emitted; content the hook *appended* is
  emitted as a last text delta (text already sent cannot be taken back: a hook that changes it
  makes the stream end with a ``guard_error``). The label goes out on the final chunk.

Any exception other than ``PolicyDenied`` fails closed: the client gets a ``guard_error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from proxy.context import RequestContext
from proxy.schemas import ChatCompletionRequest

ChatCompletion = dict[str, Any]


class PolicyDenied(Exception):
    """The guard refuses the request itself; the client gets 403 ``policy_denied``."""

    def __init__(self, message: str, decisions: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.decisions = decisions or []


@dataclass(slots=True)
class GuardedResponse:
    response: ChatCompletion  # the (possibly rewritten) answer
    label: dict[str, Any] | None = None  # -> X-Labelgate-Label and the stream's final chunk
    decisions: list[dict[str, Any]] = field(default_factory=list)  # -> X-Labelgate-Decisions
    headers: dict[str, str] = field(default_factory=dict)  # more response headers


@runtime_checkable
class GuardHook(Protocol):
    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest: ...

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: ChatCompletion
    ) -> GuardedResponse: ...


class AllowAllHook:
    """No guard: everything passes unchanged, with no label."""

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        return request

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: ChatCompletion
    ) -> GuardedResponse:
        return GuardedResponse(response=response)
