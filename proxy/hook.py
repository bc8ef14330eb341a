"""The seam where a guard plugs into the gateway: ``GatewayHook``, a base class that declares
every method the gateway calls (no method is looked up by name).

The gateway calls ``before_call`` once the request is authenticated and validated, and
``after_call`` with the whole answer before anything of it that matters leaves:

- non-streamed: ``after_call`` sees the ChatCompletion body and may rewrite it (drop tool calls
  and say why in the content, redact text); its label and decisions become headers;
- streamed: text deltas go to the client as they come, tool-call deltas are held. At the end
  the gateway assembles the same ChatCompletion body (``ctx.stream`` is True) and calls
  ``after_call``. Held tool calls that survive are then emitted; content the hook *appended* is
  emitted as a last text delta (text already sent cannot be taken back: a hook that changes it
  makes the stream end with a ``guard_error``). The label goes out on the final chunk.

Any exception other than ``PolicyDenied`` (403) or a ``ProxyError`` (sent as it is, e.g. a 400
for a malformed ``labelgate`` field) fails closed: the client gets a ``guard_error``.

Abstract (a subclass must say what it does, so a misspelled one cannot instantiate and is a
type error): ``before_call``, ``after_call``, ``before_embeddings`` and ``admit``, the methods
where a forgotten no-op would be a silent allow. With safe no-op defaults:

- ``pending(ctx)``: work ``before_call`` left undone because it cannot change what is sent
  (the policy hook's labeling of the inputs when no prompt rule or client assertion depends
  on it), as a callable, or None. The gateway runs it once the upstream request is sent, while
  the answer is awaited, so it adds nothing to the client's latency; if it raises, the
  request fails closed. It may return an async callable: what it could not do without
  waiting (the policy hook: labeling inputs that could relay an answer still being stored),
  awaited once the upstream has answered, before the answer is used. ``after_call`` must
  still work when neither was run;
- ``finish(ctx, outcome)``: called exactly once per request that passed authentication, however
  it ended (answered, denied, failed upstream, failed in the guard, client gone), with what the
  client got. The policy hook writes its audit records and ends its span here. For an answer it
  runs after the answer was sent (off the client's latency), so a failure there is logged only;
- ``stream_opened(ctx, held)`` / ``stream_closed(ctx)``: a stream's ``HeldStream`` before
  any of its text goes out, and the stream's end however it ended (before ``finish``). The
  policy hook labels relays of a stream's text while it is on (``guard.inflight``).

``admit(ctx, outcome)`` is called before an answer leaves (``outcome``: the answer as it will
be sent; for a stream, before its last event) and, with ``outcome=None``, before a stream's
first byte; if it raises, nothing of the answer leaves (a ``guard_error``; a stream that has
begun ends with an error event). The policy hook journals the request's records there
(``guard.audit.journal``), so an answer that left has its record even if the process is killed
right after: fail closed, no unrecorded answers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labelgate.proxy.context import RequestContext
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.schemas import ChatCompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from labelgate.proxy.streaming import HeldStream

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


Later = Callable[[], Awaitable[None]] | None  # what ``pending``'s work left to await


class GatewayHook(ABC):
    """What the gateway asks of a guard. Subclass it; see the module docstring for when each
    method runs."""

    @abstractmethod
    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        """Label (and possibly screen) a chat request's inputs; return what goes upstream."""

    @abstractmethod
    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: ChatCompletion
    ) -> GuardedResponse:
        """Review the whole answer: its label, decisions, and the answer as it may leave."""

    @abstractmethod
    async def before_embeddings(self, ctx: RequestContext, request: EmbeddingRequest) -> None:
        """Label an embeddings request's inputs (raise ``PolicyDenied`` to refuse it)."""

    @abstractmethod
    def admit(self, ctx: RequestContext, outcome: Outcome | None) -> None:
        """Before an answer leaves (``outcome``: as it will be sent) or before a stream's
        first byte (None): record it ahead, durably, or raise (fail closed)."""

    def pending(self, ctx: RequestContext) -> Callable[[], Later] | None:
        """Work to run while the upstream call is out (None: nothing)."""
        return None

    async def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """How the request ended, exactly once (default: nothing to record)."""
        return None

    def stream_opened(self, ctx: RequestContext, held: HeldStream) -> None:
        """A stream is about to send its first text (default: nothing)."""
        return None

    def stream_closed(self, ctx: RequestContext) -> None:
        """A stream ended, however it ended, before ``finish`` (default: nothing)."""
        return None


class PassThroughHook(GatewayHook):
    """No guard: everything passes unchanged, with no label and no record."""

    async def before_call(
        self, ctx: RequestContext, request: ChatCompletionRequest
    ) -> ChatCompletionRequest:
        return request

    async def after_call(
        self, ctx: RequestContext, request: ChatCompletionRequest, response: ChatCompletion
    ) -> GuardedResponse:
        return GuardedResponse(response=response)

    async def before_embeddings(self, ctx: RequestContext, request: EmbeddingRequest) -> None:
        return None

    def admit(self, ctx: RequestContext, outcome: Outcome | None) -> None:
        return None
