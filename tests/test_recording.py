"""What a finished request leaves in the audit store, whatever the upstream said."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.engine import Review
from labelgate.guard.labels import Lattice
from labelgate.guard.recorded_spans import RecordedSpans
from labelgate.guard.tracing import TracingConfig, setup_tracing
from labelgate.proxy.context import Caller, RequestContext
from labelgate.proxy.hook import Outcome
from labelgate.proxy.recording import Recorder


def _context() -> RequestContext:
    return RequestContext(
        request_id=uuid.uuid4().hex,
        caller=Caller("agent-a"),
        session_id="s1",
        session_source="header",
        endpoint="chat.completions",
        model="m",
    )


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 7, "completion_tokens": 3.0}, (7, 3)),
        ({"prompt_tokens": "many", "completion_tokens": True}, (None, None)),
        ({"prompt_tokens": [1], "completion_tokens": 1.5}, (None, None)),
    ],
)
async def test_a_malformed_usage_does_not_stop_recording(
    tmp_path: Path, usage: dict[str, Any], tokens: tuple[int | None, int | None]
) -> None:
    """Token counts are the upstream's word: one it garbles is left out, not a failure that
    would make the guard refuse every later answer."""
    writer = AuditWriter(tmp_path / "a.db")
    provider = setup_tracing(TracingConfig(exporters=["sqlite"]), writer)
    recorder = Recorder(writer, RecordedSpans(provider))
    ctx = _context()
    await recorder.record(ctx, Outcome("ok", None, {"choices": [], "usage": usage}))
    recorder.admit()  # still recording
    provider.shutdown()
    writer.close()
    with AuditStore(tmp_path / "a.db") as store:
        row = store.get_request(ctx.request_id)
        assert row is not None
        assert (row["input_tokens"], row["output_tokens"]) == tokens
        (span,) = store.spans_for(row["trace_id"])
        assert span["name"] == "chat m"
        assert store.verify().ok


@pytest.mark.parametrize(
    ("content", "stored"),
    [
        ("plain", "plain"),
        ([{"type": "text", "text": "a"}, {"type": "image"}, {"text": 3}, "x"], "a"),
        (42, "42"),
        (None, None),
    ],
)
async def test_an_odd_answer_content_is_recorded_as_text(
    tmp_path: Path, content: Any, stored: str | None
) -> None:
    writer = AuditWriter(tmp_path / "a.db")
    recorder = Recorder(writer)
    ctx = _context()
    label = Lattice().label("public", "trusted")
    ctx.state["review"] = Review(label=label, join=label, response=None)
    message = {"role": "assistant", "content": content}
    await recorder.record(ctx, Outcome("ok", None, {"choices": [{"message": message}]}))
    recorder.admit()
    writer.close()
    with AuditStore(tmp_path / "a.db") as store:
        (answer,) = store.messages_for(ctx.request_id)
        assert answer["content"] == stored


def _strip(record: Any) -> dict[str, Any]:
    """A record's values without what is new each time it is built (ids, clocks)."""
    values = dict(record.__dict__)
    for name in ("created", "timestamp_ns"):
        values.pop(name, None)
    if record.table == "messages":
        values.pop("id")
    if record.table == "spans":
        values["events"] = [{**e, "timestamp_ns": 0} for e in values["events"]]
    return values


async def test_a_trail_builds_the_same_records_after_pickling(tmp_path: Path) -> None:
    """The audit process builds a request's records from the trail it unpickles."""
    import pickle

    from labelgate.proxy.app import ProxyState
    from labelgate.proxy.assemble import build_runtime
    from labelgate.proxy.config import ProxyConfig
    from labelgate.proxy.recording import RequestTrail
    from labelgate.proxy.schemas import ChatCompletionRequest

    params = {"model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": "x"}
    config = ProxyConfig.model_validate(
        {
            "model_list": [{"model_name": "m", "litellm_params": params}],
            "guard": {"state_dir": str(tmp_path)},
        }
    )
    runtime = build_runtime(config, ProxyState(config, None, {}))
    try:
        hook, ctx = runtime.hook, _context()
        ctx.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        body = {"model": "m", "messages": [{"role": "user", "content": "hello " * 20}]}
        request = await hook.before_call(ctx, ChatCompletionRequest.model_validate(body))
        message = {"role": "assistant", "content": "hi"}
        answer = {"id": "c1", "model": "m", "choices": [{"message": message}], "usage": {}}
        guarded = await hook.after_call(ctx, request, answer)
        trail = RequestTrail.of(
            ctx, Outcome("ok", request, guarded.response), hook.recorder.spans, False
        )
        here, there = trail.records(), pickle.loads(pickle.dumps(trail)).records()
        assert [r.table for r in here] == ["requests", "messages", "messages", "decisions", "spans"]
        assert [_strip(r) for r in here] == [_strip(r) for r in there]
        assert len(trail) == len(here)
        assert here[-1].parent_id == "00f067aa0ba902b7"
    finally:
        await runtime.close()
