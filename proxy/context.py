"""Who is calling, in which session: the per-request context the guard reads."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labelgate.guard.ids import new_id
from labelgate.proxy.header_values import text_of_header

SESSION_HEADER = "x-labelgate-session"
AGENT_HEADER = "x-labelgate-agent"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_SESSION_LEN = 200


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal behind a request (``anonymous`` when no keys are set)."""

    agent_id: str
    assertions: Mapping[str, Any] = field(default_factory=dict)  # opaque: the guard reads it
    key_id: str | None = None  # a short prefix of the key hash, safe to log
    authenticated: bool = False
    may_raise: bool = False  # its tool names, sources and URLs are vouched for (KeyEntry)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    caller: Caller
    session_id: str
    session_source: str  # header | traceparent | metadata | user | generated
    endpoint: str
    model: str = ""
    stream: bool = False
    trace_id: str | None = None
    labelgate: Mapping[str, Any] | None = None  # the request's extension field
    state: dict[str, Any] = field(default_factory=dict)  # the hook's scratch space
    traceparent: str | None = None  # as sent, so the guard's span joins the client's trace
    hold_text: bool = False  # set by the hook: stream no text before the verdict
    started: float = field(default_factory=time.perf_counter)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header, if well formed and not all zeros."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or set(match.group(1)) == {"0"}:
        return None
    return match.group(1)


def session_of(
    headers: Mapping[str, str], body: Mapping[str, Any] | None
) -> tuple[str, str, str | None]:
    """(session id, where it came from, trace id), first match wins.

    Order: the explicit header, the trace id, ``metadata.session_id``, the OpenAI ``user``.
    Without any, each request is its own session.
    """
    trace_id = trace_id_of(headers.get("traceparent"))
    explicit = text_of_header(headers.get(SESSION_HEADER, "").strip())
    if explicit:
        return explicit[:_MAX_SESSION_LEN], "header", trace_id
    if trace_id:
        return trace_id, "traceparent", trace_id
    session_id, source = session_in_body(body or {}) or (new_id(), "generated")
    return session_id, source, None


def session_in_body(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(session id, where it came from) as the body names it: ``metadata.session_id``, else
    the OpenAI ``user``."""
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("session_id"), str):
        return metadata["session_id"][:_MAX_SESSION_LEN], "metadata"
    user = body.get("user")
    if isinstance(user, str) and user:
        return f"user:{user[:_MAX_SESSION_LEN]}", "user"
    return None
