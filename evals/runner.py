"""The runner: expands a family's scenarios into samples and runs them concurrently (bounded),
with retries of transient model errors, every transcript and score into SQLite, and a trace
per run: run > scenario > sample > agent turn > model call > tool call.

Resumable: the run id keys everything, and samples already ``done`` are skipped.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer, format_trace_id
from opentelemetry.util.types import AttributeValue
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from labelgate.evals.agent import AgentLimits
from labelgate.evals.family import Family
from labelgate.evals.models import CachedModel, is_transient
from labelgate.evals.scenario import Sample, Scenario, with_epochs
from labelgate.evals.store import ResultsStore, now
from labelgate.guard.models import ChatModel

RUN_SPAN = "eval.run"
SCENARIO_SPAN = "eval.scenario"
SAMPLE_SPAN = "eval.sample"
ATTR_RUN_ID = "labelgate.eval.run_id"
ATTR_FAMILY = "labelgate.eval.family"
ATTR_MODEL = "labelgate.eval.model"
ATTR_SCENARIO = "labelgate.eval.scenario_id"
ATTR_SAMPLE = "labelgate.eval.sample_id"
ATTR_VARIANT = "labelgate.eval.variant"
ATTR_SEED = "labelgate.eval.seed"
ATTR_STATUS = "labelgate.eval.status"


class RunConfig(BaseModel):
    """Everything that decides a run's results; a resumed run must present the same."""

    model_config = {"extra": "forbid"}

    family: str
    model: str
    limit: int | None = Field(None, ge=1, description="first N scenarios")
    via_proxy: str | None = None
    cache: bool = False
    limits: AgentLimits = Field(default_factory=AgentLimits)
    epochs: int = Field(1, ge=1, description="samples per scenario variant, each its own seed")
    api_base: str | None = Field(None, description="the OpenAI-compatible endpoint serving model")
    family_options: dict[str, Any] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """What a resumed run must match. Settings at the value runs had before they existed
        (one epoch, no top_p, no endpoint) are left out, so those runs still resume."""
        out = self.model_dump(exclude={"family", "model", "via_proxy", "cache"})
        if out["epochs"] == 1:
            del out["epochs"]
        if out["api_base"] is None:
            del out["api_base"]
        if out["limits"].get("top_p") is None:
            out["limits"].pop("top_p", None)
        return out


class RunSummary(BaseModel):
    run_id: str
    resumed: bool
    n_samples: int
    skipped: int  # already done before this invocation
    done: int
    failed: int
    model_calls: int
    cache_hits: int
    duration_s: float


def new_run_id(family: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{family}-{stamp}-{secrets.token_hex(2)}"


class Runner:
    def __init__(
        self,
        store: ResultsStore,
        tracer_provider: TracerProvider,
        *,
        concurrency: int = 4,
        progress: bool = False,
        capture_content: bool = False,
    ) -> None:
        self.store = store
        self.tracer: Tracer = tracer_provider.get_tracer("labelgate.evals")
        self.semaphore = asyncio.Semaphore(concurrency)
        self.progress = progress
        self.capture_content = capture_content

    async def run(
        self, family: Family, model: ChatModel, config: RunConfig, run_id: str | None = None
    ) -> RunSummary:
        started = time.monotonic()
        scenarios = family.scenarios(config.family_options)[: config.limit]
        samples = with_epochs([s for sc in scenarios for s in sc.samples()], config.epochs)
        run_id = run_id or new_run_id(family.name)
        resumed = self.store.start_run(
            run_id,
            family.name,
            config.model,
            config.options(),
            via_proxy=config.via_proxy,
            cache_enabled=config.cache,
            n_samples=len(samples),
        )
        finished = self.store.done_samples(run_id)
        todo = [s for s in samples if s.id not in finished]
        if config.cache:
            model = CachedModel(model, self.store)
        job = _Job(self, family, model, config, run_id)
        with self.tracer.start_as_current_span(
            RUN_SPAN,
            attributes={ATTR_RUN_ID: run_id, ATTR_FAMILY: family.name, ATTR_MODEL: config.model},
        ):
            await job.run_all(scenarios, todo)
        status = "done" if job.failed == 0 else "partial"
        self.store.finish_run(run_id, status)
        return RunSummary(
            run_id=run_id,
            resumed=resumed,
            n_samples=len(samples),
            skipped=len(samples) - len(todo),
            done=job.done,
            failed=job.failed,
            model_calls=job.model_calls,
            cache_hits=job.cache_hits,
            duration_s=round(time.monotonic() - started, 3),
        )


class _Job:
    """One invocation of a run: counters, progress and the per-sample work."""

    def __init__(
        self, runner: Runner, family: Family, model: ChatModel, config: RunConfig, run_id: str
    ) -> None:
        self.r = runner
        self.family = family
        self.model = model
        self.config = config
        self.run_id = run_id
        self.scorers = family.scorers(config.family_options)
        self.done = self.failed = self.model_calls = self.cache_hits = 0
        self._bar: Progress | None = None
        self._task: Any = None

    async def run_all(self, scenarios: Sequence[Scenario], todo: Sequence[Sample]) -> None:
        by_scenario: dict[str, list[Sample]] = defaultdict(list)
        for sample in todo:
            by_scenario[sample.scenario_id].append(sample)
        groups = [(sc, by_scenario[sc.id]) for sc in scenarios if by_scenario.get(sc.id)]
        with self._progress(len(todo)):
            await asyncio.gather(*(self._scenario(sc, group) for sc, group in groups))

    def _progress(self, total: int) -> Progress:
        bar = Progress(
            TextColumn(f"[bold]{self.run_id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            disable=not self.r.progress,
        )
        self._bar = bar
        self._task = bar.add_task("samples", total=total, status="")
        return bar

    async def _scenario(self, scenario: Scenario, samples: list[Sample]) -> None:
        with self.r.tracer.start_as_current_span(
            SCENARIO_SPAN, attributes={ATTR_RUN_ID: self.run_id, ATTR_SCENARIO: scenario.id}
        ):
            await asyncio.gather(*(self._sample(s) for s in samples))

    async def _sample(self, sample: Sample) -> None:
        async with self.r.semaphore:
            attrs: dict[str, AttributeValue] = {
                ATTR_RUN_ID: self.run_id,
                ATTR_SAMPLE: sample.id,
                ATTR_SCENARIO: sample.scenario_id,
                ATTR_VARIANT: sample.variant,
                ATTR_SEED: sample.seed,
            }
            with self.r.tracer.start_as_current_span(SAMPLE_SPAN, attributes=attrs) as span:
                await self._run_sample(sample, span)
        if self._bar is not None:
            status = f"ok {self.done} failed {self.failed} cache {self.cache_hits}"
            self._bar.update(self._task, advance=1, status=status)

    async def _run_sample(self, sample: Sample, span: Span) -> None:
        started_at, t0 = now(), time.monotonic()
        row: dict[str, Any] = {
            "run_id": self.run_id,
            "sample_id": sample.id,
            "scenario_id": sample.scenario_id,
            "variant": sample.variant,
            "seed": sample.seed,
            "metadata": sample.metadata,
            "started_at": started_at,
            "error": None,
            "trace_id": format_trace_id(span.get_span_context().trace_id),
        }
        env = self.family.environment(sample)
        try:
            transcript = await self.family.run_sample(
                self.model,
                sample,
                env,
                self.r.tracer,
                limits=self.config.limits,
                capture_content=self.r.capture_content,
            )
            scores = [await s.score(sample, transcript, env) for s in self.scorers]
        except Exception as exc:
            self.failed += 1
            span.set_attribute(ATTR_STATUS, "error")
            span.record_exception(exc)
            # A transient error got here only after every retry.
            attempts = self.config.limits.retries + 1 if is_transient(exc) else 1
            row |= {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            row["attempts"] = attempts
            row |= {"finished_at": now(), "duration_s": round(time.monotonic() - t0, 4)}
            self.r.store.save_sample(row, sample.messages, [])
            return
        self.done += 1
        self.model_calls += transcript.model_calls
        self.cache_hits += transcript.cache_hits
        span.set_attribute(ATTR_STATUS, "done")
        row |= {
            "status": "done",
            "attempts": 1 + transcript.retries,
            "stop_reason": transcript.stop_reason,
            "turns": transcript.turns,
            "input_tokens": transcript.input_tokens,
            "output_tokens": transcript.output_tokens,
            "model_calls": transcript.model_calls,
            "cache_hits": transcript.cache_hits,
            "finished_at": now(),
            "duration_s": round(time.monotonic() - t0, 4),
        }
        self.r.store.save_sample(row, transcript.messages, [s.model_dump() for s in scores])
