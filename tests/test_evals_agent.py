"""The agent loop: tool calling against an environment, limits, retries, spans."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from labelgate.evals.agent import AgentLimits, run_agent
from labelgate.evals.environment import Environment, Tool, ToolError
from labelgate.evals.scenario import Sample
from labelgate.guard.models import ChatResult, ModelError, ScriptedModel


def call(name: str, args: dict[str, Any], id_: str = "c1") -> ChatResult:
    return ChatResult(
        text="",
        tool_calls=[
            {
                "id": id_,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
        finish_reason="tool_calls",
        prompt_tokens=10,
        completion_tokens=5,
    )


def write_file(state: dict[str, Any], args: dict[str, Any]) -> str:
    if "path" not in args:
        raise ToolError("path is required")
    state.setdefault("files", {})[args["path"]] = args.get("text", "")
    return "ok"


def files_env() -> Environment:
    return Environment([Tool("write_file", "Write a file.", write_file)])


def sample() -> Sample:
    return Sample(
        id="s:base:0",
        scenario_id="s",
        family="toy",
        variant="base",
        seed=0,
        messages=[{"role": "user", "content": "write hello"}],
    )


@pytest.fixture
def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_tool_calls_change_state_and_feed_results_back(tracing: Any) -> None:
    provider, exporter = tracing
    model = ScriptedModel(
        [
            call("write_file", {"path": "a.txt", "text": "hello"}),
            ChatResult(text="done", prompt_tokens=20, completion_tokens=1),
        ]
    )
    env = files_env()
    t = await run_agent(model, sample(), env, provider.get_tracer("t"))
    assert env.state == {"files": {"a.txt": "hello"}}
    assert t.stop_reason == "answer" and t.turns == 2 and t.final_text == "done"
    assert [m["role"] for m in t.messages] == ["user", "assistant", "tool", "assistant"]
    assert t.messages[2] == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "write_file",
        "content": "ok",
    }
    # The model saw the tool result on its second call, and was offered the tool.
    assert model.calls[1][-1]["role"] == "tool"
    assert (t.input_tokens, t.output_tokens) == (30, 6)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("eval.agent_turn") == 2
    assert names.count("chat scripted") == 2 and "execute_tool write_file" in names
    spans = {s.name: s for s in exporter.get_finished_spans()}
    tool, chat = spans["execute_tool write_file"], spans["chat scripted"]
    turn_ids = {
        s.context.span_id for s in exporter.get_finished_spans() if s.name == "eval.agent_turn"
    }
    assert tool.parent.span_id in turn_ids and chat.parent.span_id in turn_ids


async def test_bad_tool_use_is_reported_to_the_agent_not_raised() -> None:
    model = ScriptedModel(
        [call("nope", {}), call("write_file", {"text": "x"}, "c2"), ChatResult(text="gave up")]
    )
    env = files_env()
    t = await run_agent(model, sample(), env, TracerProvider().get_tracer("t"))
    tool_msgs = [m["content"] for m in t.messages if m["role"] == "tool"]
    assert tool_msgs == ["error: no tool named 'nope'", "error: path is required"]
    assert env.state == {}


async def test_max_turns_stops_a_looping_agent() -> None:
    model = ScriptedModel([call("write_file", {"path": "x"})], cycle=True)
    limits = AgentLimits(max_turns=3)
    t = await run_agent(
        model, sample(), files_env(), TracerProvider().get_tracer("t"), limits=limits
    )
    assert t.stop_reason == "max_turns" and t.turns == 3 and t.model_calls == 3


async def test_token_budget_stops_the_loop() -> None:
    model = ScriptedModel([call("write_file", {"path": "x"})], cycle=True)
    limits = AgentLimits(max_tokens=30)  # each call costs 15 tokens
    t = await run_agent(
        model, sample(), files_env(), TracerProvider().get_tracer("t"), limits=limits
    )
    assert t.stop_reason == "max_tokens" and t.model_calls == 2


class SlowModel:
    name = "slow"

    async def chat(self, messages: Sequence[dict[str, Any]], **params: Any) -> ChatResult:
        await asyncio.sleep(5)
        return ChatResult(text="late")


async def test_time_limit_stops_a_slow_sample() -> None:
    t = await run_agent(
        SlowModel(),
        sample(),
        Environment(),
        TracerProvider().get_tracer("t"),
        limits=AgentLimits(timeout_s=0.05),
    )
    assert t.stop_reason == "timeout" and t.model_calls == 0


class Flaky:
    """Fails the first ``failures`` calls with ``exc``, then answers."""

    def __init__(self, failures: int, exc: Exception) -> None:
        self.name = "flaky"
        self.failures = failures
        self.exc = exc
        self.calls = 0

    async def chat(self, messages: Sequence[dict[str, Any]], **params: Any) -> ChatResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return ChatResult(text="Action 1")


FAST_RETRY = AgentLimits(retry_backoff=0)


async def test_transient_errors_are_retried() -> None:
    model = Flaky(2, ConnectionError("reset"))
    t = await run_agent(
        model, sample(), Environment(), TracerProvider().get_tracer("t"), limits=FAST_RETRY
    )
    assert t.final_text == "Action 1" and t.retries == 2 and model.calls == 3


async def test_permanent_errors_are_not_retried() -> None:
    model = Flaky(1, ModelError("bad request"))
    with pytest.raises(ModelError):
        await run_agent(
            model, sample(), Environment(), TracerProvider().get_tracer("t"), limits=FAST_RETRY
        )
    assert model.calls == 1
    exhausted = Flaky(10, TimeoutError())
    with pytest.raises(TimeoutError):
        await run_agent(
            exhausted,
            sample(),
            Environment(),
            TracerProvider().get_tracer("t"),
            limits=AgentLimits(retries=2, retry_backoff=0),
        )
    assert exhausted.calls == 3
