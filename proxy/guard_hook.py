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

Any exception other than ``PolicyDenied`` (403) or a ``ProxyError`` (sent as it is, e.g. a 400
for a malformed ``labelgate`` field) fails closed: the client gets a ``guard_error``.

Optional methods (looked up with ``getattr``, so a minimal hook needs neither):

- ``before_embeddings(ctx, request)``: label an embeddings request's inputs;
- ``pending(ctx)``: work ``before_call`` left undone because it cannot change what is sent
  (the label guard's labeling of the inputs when no prompt rule or client assertion depends
  on it), as a callable, or None. The proxy runs it once the upstream request is sent, while
  the answer is awaited, so it adds nothing to the client's latency; if it raises, the
  request fails closed. It may return an async callable: what it could not do without
  waiting (the label guard: labeling inputs that could relay an answer still being stored),
  awaited once the upstream has answered, before the answer is used. ``after_call`` must
  still work when neither was run;
- ``finish(ctx, outcome)``: called exactly once per request that passed authentication, however
  it ended (answered, denied, failed upstream, failed in the guard, client gone), with what the
  client got. The label guard writes its audit records and ends its span here. For an answer it
  runs after the answer was sent (off the client's latency), so a failure there is logged only;
- ``stream_opened(ctx, held)`` / ``stream_closed(ctx)``: a stream's ``HeldStream`` before
  any of its text goes out, and the stream's end however it ended (before ``finish``). The
  label guard labels relays of a stream's text while it is on (``guard.inflight``);
- ``admit(ctx)``: called before an answer leaves; if it raises, the answer is replaced by a
  ``guard_error``. The label guard raises when it could not record the answer (its writer
  stopped, or an earlier record failed): fail closed, no unrecorded answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from proxy.context import RequestContext
from proxy.errors import ProxyError
from proxy.schemas import ChatCompletionRequest, EmbeddingRequest

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


Status = Literal["ok", "denied", "error"]


@dataclass(slots=True)
class Outcome:
    """How a request ended, as the client saw it."""

    status: Status
    request: ChatCompletionRequest | EmbeddingRequest | None = None  # None: body never parsed
    response: dict[str, Any] | None = None  # the answer as sent (streams: assembled)
    error: ProxyError | None = None
    ended: float = field(default_factory=time.perf_counter)

    @classmethod
    def failed(
        cls, error: ProxyError, request: ChatCompletionRequest | EmbeddingRequest | None
    ) -> Outcome:
        status: Status = "denied" if error.type == "policy_denied" else "error"
        return cls(status, request, error=error)


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
