"""Pending approvals in PostgreSQL: an ``ask`` held at one replica, answered through any.

The held request inserts a row and waits; an answer (at any replica) updates the row and sends
``NOTIFY labelgate_approvals, '<id>'`` in the same statement; the holding replica's listener
(``proxy/pg_state.py``) wakes the request, which reads the verdict and deletes the row. A row
can be answered once, and only before it expires (its request's timeout): the holder takes the
row's verdict when it stops waiting, so an answer that raced the timeout is still honoured,
and one given while the listener was reconnecting is found when it has.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from labelgate.guard.policy import Decision
from labelgate.proxy.approvals import (
    ApprovalQueue,
    Pending,
    UnknownApproval,
    Verdict,
    verdict_summary,
)
from labelgate.proxy.context import RequestContext

if TYPE_CHECKING:
    from labelgate.proxy.pg_state import PostgresState

APPROVALS_CHANNEL = "labelgate_approvals"

MIGRATIONS: tuple[str, ...] = (
    # 1: one row per held ``ask``, until its request stops waiting
    """
    CREATE TABLE approvals (
        id         text PRIMARY KEY,        -- the decision's id
        request_id text NOT NULL,
        agent      text NOT NULL,           -- whose request is held
        session_id text NOT NULL,
        target     text NOT NULL,           -- "response" or a tool call's id
        reason     text NOT NULL,
        rule       text,
        arguments  jsonb,                   -- a held tool call's arguments
        created    double precision NOT NULL,  -- unix time
        expires    timestamptz NOT NULL,    -- no answer is taken after this
        replica    text NOT NULL,           -- which replica holds the request
        approved   boolean,                 -- NULL: waiting
        verdict    text                     -- "approved by alice: ..."
    );
    CREATE INDEX approvals_waiting ON approvals (created) WHERE approved IS NULL;
    """,
)

_COLUMNS = "id, request_id, agent, session_id, target, reason, rule, arguments, created"
_WAITING = "approved IS NULL AND expires > now()"


def _pending(row: dict[str, Any]) -> Pending:
    return Pending(
        id=row["id"],
        request_id=row["request_id"],
        agent=row["agent"],
        session_id=row["session_id"],
        target=row["target"],
        reason=row["reason"],
        rule=row["rule"],
        created=row["created"],
        arguments=row["arguments"],
    )


class PostgresApprovals(ApprovalQueue):
    def __init__(self, state: PostgresState, timeout: float) -> None:
        self._state = state
        self.timeout = timeout
        self._held: dict[str, asyncio.Event] = {}  # ids held by this replica -> wake-up

    def wake(self, approval_id: str) -> None:
        event = self._held.get(approval_id)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for event in self._held.values():
            event.set()

    async def pending(self) -> list[Pending]:
        async def read(conn: psycopg.AsyncConnection[Any]) -> list[Pending]:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE {_WAITING} ORDER BY created"
            )
            return [_pending(row) for row in await cursor.fetchall()]

        result: list[Pending] = await self._state.run(read)
        return result

    async def find(self, approval_id: str) -> Pending:
        async def read(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any] | None:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE id = %s AND {_WAITING}",
                (approval_id,),
            )
            return await cursor.fetchone()

        row = await self._state.run(read)
        if row is None:
            raise UnknownApproval(approval_id)
        return _pending(row)

    async def answer(self, approval_id: str, approved: bool, by: str, note: str = "") -> Pending:
        summary = verdict_summary(approved, by, note)

        async def update(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any] | None:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"WITH answered AS (UPDATE approvals SET approved = %s, verdict = %s "
                f"WHERE id = %s AND {_WAITING} RETURNING {_COLUMNS}) "
                "SELECT answered.*, pg_notify(%s, answered.id) FROM answered",
                (approved, summary, approval_id, APPROVALS_CHANNEL),
            )
            return await cursor.fetchone()

        row = await self._state.run(update)
        if row is None:
            raise UnknownApproval(approval_id)
        item = _pending(row)
        item.verdict = Verdict(approved, summary)
        return item

    async def wait(
        self, ctx: RequestContext, target: str, decision: Decision, arguments: Any = None
    ) -> Verdict:
        await self._state.run(
            lambda conn: conn.execute(
                "INSERT INTO approvals (id, request_id, agent, session_id, target, reason, "
                "rule, arguments, created, expires, replica) VALUES (%s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, now() + make_interval(secs => %s), %s)",
                (
                    decision.id,
                    ctx.request_id,
                    ctx.caller.agent_id,
                    ctx.session_id,
                    target,
                    decision.reason,
                    decision.rule,
                    Jsonb(arguments),
                    time.time(),
                    self.timeout,
                    self._state.replica,
                ),
            )
        )
        woken = self._held[decision.id] = asyncio.Event()
        try:
            await self._until_answered(decision.id, woken)
        finally:
            del self._held[decision.id]
        return await self._settle(decision.id)

    async def _until_answered(self, approval_id: str, woken: asyncio.Event) -> None:
        """Until the row is answered (checked at each wake-up) or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(woken.wait(), left)
            except TimeoutError:
                return
            woken.clear()
            if await self._answered(approval_id):
                return

    async def _answered(self, approval_id: str) -> bool:
        async def read(conn: psycopg.AsyncConnection[Any]) -> bool:
            cursor = await conn.execute(
                "SELECT approved IS NOT NULL FROM approvals WHERE id = %s", (approval_id,)
            )
            row = await cursor.fetchone()
            return row is None or bool(row[0])

        answered: bool = await self._state.run(read)
        return answered

    async def _settle(self, approval_id: str) -> Verdict:
        """The row's verdict (deleted: the request stops waiting); none: denied."""

        async def take(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cursor = await conn.execute(
                "DELETE FROM approvals WHERE id = %s RETURNING approved, verdict", (approval_id,)
            )
            return await cursor.fetchone()

        row = await self._state.run(take)
        if row is None or row[0] is None:
            return Verdict(False, f"no answer within {self.timeout:g}s: denied")
        return Verdict(bool(row[0]), str(row[1]))
