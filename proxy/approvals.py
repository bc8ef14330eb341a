"""Human approvals for ``ask`` decisions: the request is held until a person answers.

A person lists and answers them through ``/v1/labelgate/approvals`` or
``labelgate approvals``; with no answer before the timeout, the flow is denied (fail closed).
Where pending approvals are kept is a seam (:class:`ApprovalQueue`): in this process's memory
(:class:`Approvals`, the default: they are only meaningful while their request is held), or
in PostgreSQL (``proxy/pg_state.py``), so that an ``ask`` raised at one replica can be
answered through any other.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelgate.guard.policy import Decision
from labelgate.proxy.context import RequestContext


@dataclass(slots=True)
class Verdict:
    approved: bool
    summary: str  # "approved by alice", "rejected by bob: ...", "timed out after 60s"


@dataclass(slots=True)
class Pending:
    id: str
    request_id: str
    agent: str
    session_id: str
    target: str
    reason: str
    rule: str | None
    created: float
    arguments: Any = None  # a held tool call's arguments (what the approver approves)
    _answered: asyncio.Event = field(default_factory=asyncio.Event)
    verdict: Verdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "agent": self.agent,
            "session_id": self.session_id,
            "target": self.target,
            "reason": self.reason,
            "rule": self.rule,
            "arguments": self.arguments,
            "waiting_seconds": round(time.time() - self.created, 1),
        }


class UnknownApproval(KeyError):
    pass


def verdict_summary(approved: bool, by: str, note: str = "") -> str:
    word = "approved" if approved else "rejected"
    return f"{word} by {by}" + (f": {note}" if note else "")


class ApprovalQueue(ABC):
    """Where held ``ask`` decisions wait for a person."""

    timeout: float

    @abstractmethod
    async def pending(self) -> list[Pending]:
        """The approvals waiting for an answer, oldest first."""

    @abstractmethod
    async def find(self, approval_id: str) -> Pending:
        """A waiting approval, or ``UnknownApproval``."""

    @abstractmethod
    async def wait(
        self, ctx: RequestContext, target: str, decision: Decision, arguments: Any = None
    ) -> Verdict:
        """Hold the flow until a person answers, or deny it at the timeout."""

    @abstractmethod
    async def answer(self, approval_id: str, approved: bool, by: str, note: str = "") -> Pending:
        """Answer a waiting approval (``UnknownApproval`` if none is waiting)."""


class Approvals(ApprovalQueue):
    """Pending approvals in this process's memory."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._pending: dict[str, Pending] = {}

    async def pending(self) -> list[Pending]:
        return list(self._pending.values())

    async def find(self, approval_id: str) -> Pending:
        item = self._pending.get(approval_id)
        if item is None:
            raise UnknownApproval(approval_id)
        return item

    async def wait(
        self, ctx: RequestContext, target: str, decision: Decision, arguments: Any = None
    ) -> Verdict:
        item = Pending(
            id=decision.id,
            request_id=ctx.request_id,
            agent=ctx.caller.agent_id,
            session_id=ctx.session_id,
            target=target,
            reason=decision.reason,
            rule=decision.rule,
            created=time.time(),
            arguments=arguments,
        )
        self._pending[item.id] = item
        try:
            await asyncio.wait_for(item._answered.wait(), self.timeout)
        except TimeoutError:
            return Verdict(False, f"no answer within {self.timeout:g}s: denied")
        finally:
            self._pending.pop(item.id, None)
        assert item.verdict is not None
        return item.verdict

    async def answer(self, approval_id: str, approved: bool, by: str, note: str = "") -> Pending:
        item = self._pending.get(approval_id)
        if item is None:
            raise UnknownApproval(approval_id)
        item.verdict = Verdict(approved, verdict_summary(approved, by, note))
        item._answered.set()
        return item


TOKEN_FILE = "approver-token"


class ApproverToken:
    """Keyless mode's approver credential: a random token made at start and written to a
    file only its owner can read (0600) in the guard's state dir; approvers send it as
    ``Authorization: Bearer <token>`` (``labelgate approvals`` reads the file). A restart
    makes a new one."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / TOKEN_FILE
        self._token = secrets.token_urlsafe(32)
        self.path.unlink(missing_ok=True)  # a file of someone else's, or with wider modes
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._token + "\n")

    def matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self._token)
