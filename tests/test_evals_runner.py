"""The runner: results and transcripts in SQLite, resume, cache, errors, the span tree."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from labelgate.evals.agent import AgentLimits
from labelgate.evals.environment import Environment, Tool
from labelgate.evals.family import AgentLoop, ReportSection
from labelgate.evals.runner import RunConfig, Runner
from labelgate.evals.scenario import Sample, Scenario, Variant
from labelgate.evals.scorers import Scorer, StateScorer
from labelgate.evals.store import ResultsStore
from labelgate.guard.models import ChatResult, ModelError, ScriptedModel


def set_flag(state: dict[str, Any], args: dict[str, Any]) -> str:
    state["flag"] = args.get("value")
    return "set"


class ToyFamily(AgentLoop):
    """Two scenarios x two variants: did the agent set the flag the prompt asked for?"""

    name = "toy"
    description = "toy"
    primary_scorer = "flag"

    def scenarios(self, options: dict[str, Any]) -> list[Scenario]:
        return [
            Scenario(
                id=f"t{i}",
                family="toy",
                prompt="set the flag to {want}",
                variants=[
                    Variant(name="a", vars={"want": "on"}, metadata={"want": "on"}),
                    Variant(name="b", vars={"want": "off"}, metadata={"want": "off"}),
                ],
            )
            for i in range(options.get("n", 2))
        ]

    def environment(self, sample: Sample) -> Environment:
        return Environment([Tool("set_flag", "Set the flag.", set_flag)])

    def scorers(self, options: dict[str, Any]) -> list[Scorer]:
        def check(state: dict[str, Any], sample: Sample) -> tuple[bool, str]:
            return state.get("flag") == sample.metadata["want"], f"flag={state.get('flag')}"

        return [StateScorer("flag", check)]

    def analyze(self, samples: Any, scores: Any, options: Any = None) -> list[ReportSection]:
        return []


def obedient(messages: Sequence[dict[str, Any]]) -> ChatResult:
    """Sets the flag as asked, then says done; the state scorer should pass every sample."""
    if messages[-1]["role"] == "tool":
        return ChatResult(text="done")
    want = messages[-1]["content"].rsplit(" ", 1)[-1]
    args = json.dumps({"value": want})
    return ChatResult(
        text="",
        tool_calls=[
            {"id": "c", "type": "function", "function": {"name": "set_flag", "arguments": args}}
        ],
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ResultsStore, TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return ResultsStore(tmp_path / "r.db"), provider, exporter


def config(**kw: Any) -> RunConfig:
    return RunConfig(family="toy", model="scripted", limits=AgentLimits(retry_backoff=0), **kw)


async def test_run_records_samples_transcripts_scores(setup: Any) -> None:
    store, provider, _ = setup
    summary = await Runner(store, provider).run(ToyFamily(), ScriptedModel(obedient), config())
    assert (summary.n_samples, summary.done, summary.failed, summary.skipped) == (4, 4, 0, 0)
    rows = store.samples(summary.run_id)
    assert {r["sample_id"] for r in rows} == {"t0:a:0", "t0:b:0", "t1:a:0", "t1:b:0"}
    assert all(r["status"] == "done" and r["turns"] == 2 for r in rows)
    scores = store.scores(summary.run_id)
    assert [s["value"] for s in scores] == ["yes"] * 4
    msgs = store.messages(summary.run_id, "t0:b:0")
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(msgs[1]["tool_calls"])[0]["function"]["arguments"] == '{"value": "off"}'
    assert store.get_run(summary.run_id)["status"] == "done"


async def test_state_scorer_fails_a_disobedient_agent(setup: Any) -> None:
    store, provider, _ = setup
    lazy = ScriptedModel(["no"], cycle=True)
    summary = await Runner(store, provider).run(ToyFamily(), lazy, config(limit=1))
    assert [s["value"] for s in store.scores(summary.run_id)] == ["no", "no"]


async def test_limit_counts_scenarios(setup: Any) -> None:
    store, provider, _ = setup
    summary = await Runner(store, provider).run(
        ToyFamily(), ScriptedModel(obedient), config(limit=1, family_options={"n": 5})
    )
    assert summary.n_samples == 2


class FailOn:
    """Answers like ``obedient`` but fails for prompts containing ``word`` until healed."""

    def __init__(self, word: str) -> None:
        self.name = "scripted"
        self.word = word
        self.broken = True
        self.calls = 0

    async def chat(self, messages: Sequence[dict[str, Any]], **params: Any) -> ChatResult:
        self.calls += 1
        if self.broken and self.word in messages[0]["content"]:
            raise ModelError("boom")
        return obedient(messages)


async def test_failed_samples_are_recorded_and_a_rerun_resumes(setup: Any) -> None:
    store, provider, _ = setup
    model = FailOn("off")
    first = await Runner(store, provider).run(ToyFamily(), model, config(), run_id="r1")
    assert (first.done, first.failed) == (2, 2)
    assert store.get_run("r1")["status"] == "partial"
    errors = [r for r in store.samples("r1") if r["status"] == "error"]
    assert {r["variant"] for r in errors} == {"b"} and "boom" in errors[0]["error"]
    model.broken, model.calls = False, 0
    second = await Runner(store, provider).run(ToyFamily(), model, config(), run_id="r1")
    assert second.resumed and second.skipped == 2 and second.done == 2
    assert model.calls == 4  # only the two failed samples ran again (2 turns each)
    assert store.get_run("r1")["status"] == "done"
    assert len(store.scores("r1")) == 4


async def test_resume_refuses_other_options(setup: Any) -> None:
    store, provider, _ = setup
    await Runner(store, provider).run(ToyFamily(), ScriptedModel(obedient), config(), "r2")
    with pytest.raises(ValueError, match="other options"):
        await Runner(store, provider).run(
            ToyFamily(), ScriptedModel(obedient), config(limit=1), "r2"
        )


async def test_cache_is_opt_in_and_counted(setup: Any) -> None:
    store, provider, _ = setup
    one = {"n": 1}  # two samples with distinct prompts, two model calls each
    first_model = ScriptedModel(obedient)
    await Runner(store, provider).run(
        ToyFamily(), first_model, config(cache=True, family_options=one), "c1"
    )
    assert len(first_model.calls) == 4
    second_model = ScriptedModel(obedient)
    summary = await Runner(store, provider).run(
        ToyFamily(), second_model, config(cache=True, family_options=one), "c2"
    )
    assert second_model.calls == [] and summary.cache_hits == summary.model_calls == 4
    assert all(r["cache_hits"] == 2 for r in store.samples("c2"))
    assert [s["value"] for s in store.scores("c2")] == ["yes", "yes"]  # replayed tool calls
    uncached = ScriptedModel(obedient)
    summary = await Runner(store, provider).run(
        ToyFamily(), uncached, config(family_options=one), "c3"
    )
    assert len(uncached.calls) == 4 and summary.cache_hits == 0


async def test_span_tree_run_scenario_sample_turn_call_tool(setup: Any) -> None:
    store, provider, exporter = setup
    await Runner(store, provider).run(ToyFamily(), ScriptedModel(obedient), config(limit=1))
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def chain(span: Any) -> list[str]:
        names = [span.name]
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names[::-1]

    tool = next(s for s in spans if s.name == "execute_tool set_flag")
    assert chain(tool) == [
        "eval.run",
        "eval.scenario",
        "eval.sample",
        "eval.agent_turn",
        "execute_tool set_flag",
    ]
    chat = next(s for s in spans if s.name == "chat scripted")
    assert chain(chat)[:4] == ["eval.run", "eval.scenario", "eval.sample", "eval.agent_turn"]
    assert len({s.context.trace_id for s in spans}) == 1
    sample = next(s for s in spans if s.name == "eval.sample")
    assert sample.attributes["labelgate.eval.status"] == "done"
