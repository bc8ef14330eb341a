"""A shared fingerprint store that cannot be reached (PostgreSQL down) is an outage, not a
failure: the answers waiting to be fingerprinted are kept and written again, requests are
refused (503) meanwhile, and once the store is back they are written and requests served."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from labelgate.guard.engine import Guard
from labelgate.guard.fingerprint import SQLiteFingerprintStore
from labelgate.guard.policy import load_policy
from labelgate.guard.state import StateUnavailable
from labelgate.proxy import remembering
from labelgate.proxy.context import Caller, RequestContext
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.policy_hook import PolicyHook
from labelgate.proxy.schemas import ChatCompletionRequest

POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
ANSWER = "The ferry to the northern island leaves at nine, and the last one back is at six."


class FlakyStore(SQLiteFingerprintStore):
    """Raises what the PostgreSQL store raises when its server is gone, while ``down``."""

    down = threading.Event()

    def add_many(self, entries: Any) -> int:
        if self.down.is_set():
            raise StateUnavailable("PostgreSQL postgresql://x@db/lg: cannot store: gone")
        return super().add_many(entries)


def _turn(text: str) -> tuple[RequestContext, ChatCompletionRequest]:
    ctx = RequestContext("r-1", Caller("reader"), "s", "generated", "chat")
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return ctx, ChatCompletionRequest.model_validate(body)


async def _until(predicate: Any) -> None:
    while not predicate():  # the writer thread reports back on the loop
        await asyncio.sleep(0.01)


async def test_answers_are_kept_through_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remembering, "RETRY_SECONDS", 0.05)
    policy = load_policy(POLICY)
    store = FlakyStore(tmp_path / "fp.db", policy.lattice)
    hook = PolicyHook(Guard(policy, fingerprints=store))
    web = policy.lattice.parse({"integrity": "untrusted", "sources": ["tool:fetch_url"]})
    store.down.set()
    try:
        stored = hook.answers.add(ANSWER, web, "reader")
        with pytest.raises(StateUnavailable):  # who waits for it (read_your_writes) is told
            await asyncio.wait_for(hook.answers.written(stored), 10)
        assert hook.answers.outage is not None
        ctx, request = _turn("When does the ferry leave?")
        with pytest.raises(ProxyError) as refused:
            await hook.before_call(ctx, request)
        assert refused.value.status == 503 and refused.value.code == "state_unavailable"
        assert hook.answers.failure is None  # not a failure: nothing is given up
    finally:
        store.down.clear()
    await asyncio.wait_for(hook.answers.settled(lambda: [ANSWER]), 10)  # written at a retry
    await hook.answers.written(stored)  # done: nothing to refuse
    assert hook.answers.outage is None
    (match,) = store.lookup(f"Someone said: {ANSWER}")
    assert match.label == web
    ctx, request = _turn("When does the ferry leave?")
    await hook.before_call(ctx, request)  # served again
    await hook.aclose()
    store.close()
