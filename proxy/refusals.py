"""Compact, rate-bounded audit records of refused requests.

A request refused before it was admitted (a bad or missing key, over its key's limits, a
browser's cross-origin request, an unknown path, a bad method, a non-approver on the approvals
endpoints) costs its sender nothing, so a flood of them must not grow the audit store without
bound. Each gets its ``X-Request-Id`` and a compact ``RequestRecord`` (status ``error``, the
error's message, no content) while a token bucket allows (``guard.refusal_records``, default 20
a second, bursts of 200); beyond that, refusals are counted per (client address, status,
code), and once a second each group is written as one summary record (agent
``labelgate:refusals``, its message the count and the first and last request ids). At most
``MAX_GROUPS`` groups are kept per second (the rest are counted under source ``other``), so
the store grows by at most rate + burst + ``MAX_GROUPS`` + 1 records a second however many
refusals come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from labelgate.guard.ids import new_id
from labelgate.proxy.auth import TokenBucket
from labelgate.proxy.config import RateLimit
from labelgate.proxy.context import Caller, RequestContext
from labelgate.proxy.errors import ProxyError

Record = Callable[[RequestContext, ProxyError], Awaitable[None]]
SUMMARY_AGENT = "labelgate:refusals"
MAX_GROUPS = 16
FLUSH_SECONDS = 1.0


@dataclass(slots=True)
class _Group:
    count: int
    first: str
    last: str
    type: str


class RefusalLog:
    """Records refused requests through ``record`` (the hook's), at most ``limit`` a second
    one by one, the rest as per-source summaries."""

    def __init__(self, limit: RateLimit, record: Record) -> None:
        self.limit = limit
        self._bucket = TokenBucket(limit)
        self._record = record
        self._groups: dict[tuple[str, int, str], _Group] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.summarised = 0  # refusals counted in summaries, not recorded one by one

    async def refused(self, ctx: RequestContext, error: ProxyError, source: str) -> None:
        if self._bucket.take() == 0.0:
            await self._record(ctx, error)
            return
        key = (source, error.status, error.code or error.type)
        if key not in self._groups and len(self._groups) >= MAX_GROUPS:
            key = ("other", error.status, error.code or error.type)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(1, ctx.request_id, ctx.request_id, error.type)
        else:
            group.count += 1
            group.last = ctx.request_id
        self.summarised += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        """Write the summaries counted so far (once a second, and at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        groups, self._groups = self._groups, {}
        for (source, status, code), group in groups.items():
            await self._record(_summary_context(), _summary_error(source, status, code, group))

    async def aclose(self) -> None:
        await self.flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


def _summary_context() -> RequestContext:
    return RequestContext(
        request_id=new_id(),
        caller=Caller(agent_id=SUMMARY_AGENT),
        session_id=SUMMARY_AGENT,
        session_source="generated",
        endpoint="refusals",
    )


def _summary_error(source: str, status: int, code: str, group: _Group) -> ProxyError:
    message = (
        f"{group.count} refused requests from {source} ({status} {code}) not recorded one by "
        f"one (rate bound); first {group.first}, last {group.last}"
    )
    return ProxyError(status, message, type=group.type, code=code)
