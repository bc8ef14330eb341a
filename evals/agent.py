"""The agent loop: ask the model, run the tools it calls, feed the results back, until it
answers without calling a tool or a limit (turns, tokens, time) is reached.

Each turn is a span, with the model call (GenAI ``chat`` span) and each tool call
(``execute_tool`` span) inside it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from opentelemetry.trace import Tracer
from pydantic import BaseModel, Field

from labelgate.evals.environment import Environment
from labelgate.evals.models import CachedModel, call_with_retries
from labelgate.evals.scenario import Sample
from labelgate.guard import semconv
from labelgate.guard.models import ChatModel, ChatResult, Message

StopReason = Literal["answer", "max_turns", "max_tokens", "timeout"]
# The one stop reason after which the agent's final state is its own: any other (a limit cut
# the rollout off) leaves the sample *undecided* unless the state already shows the act.
DECIDED_STOP: StopReason = "answer"

TURN_SPAN = "eval.agent_turn"
ATTR_TURN = "labelgate.eval.turn"
ATTR_CACHE_HIT = "labelgate.eval.cache_hit"
ATTR_TOP_P = "gen_ai.request.top_p"


class AgentLimits(BaseModel):
    model_config = {"extra": "forbid"}

    max_turns: int = Field(8, ge=1, description="model calls per sample")
    max_tokens: int = Field(16_000, ge=1, description="prompt + completion tokens per sample")
    max_output_tokens: int = Field(1024, ge=1, description="completion tokens per model call")
    timeout_s: float = Field(300.0, gt=0, description="wall-clock seconds per sample")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0: greedy)")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling; None: unset")
    retries: int = Field(3, ge=0, description="retries of a transient model error")
    retry_backoff: float = Field(0.5, ge=0, description="seconds before the first retry")


class Transcript(BaseModel):
    messages: list[Message]
    stop_reason: StopReason
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    retries: int = 0

    @property
    def undecided(self) -> str | None:
        """Why the rollout was cut off (``timeout``, ``max_turns``, ``max_tokens``), or None
        when the agent finished by answering."""
        return undecided_reason(self.stop_reason)

    @property
    def final_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "assistant" and message.get("content"):
                return str(message["content"])
        return ""


def undecided_reason(stop_reason: str | None) -> str | None:
    """None for a rollout the agent ended itself; else the limit (or ``error``) that ended it."""
    if stop_reason == DECIDED_STOP:
        return None
    return stop_reason or "error"


def sampling_params(limits: AgentLimits, seed: int) -> dict[str, Any]:
    """The sampling parameters of a model call under ``limits`` (top_p only when set)."""
    params: dict[str, Any] = {"temperature": limits.temperature, "seed": seed}
    if limits.top_p is not None:
        params["top_p"] = limits.top_p
    return params


class _Loop:
    def __init__(
        self,
        model: ChatModel,
        env: Environment,
        limits: AgentLimits,
        tracer: Tracer,
        capture_content: bool,
    ) -> None:
        self.model = model
        self.env = env
        self.limits = limits
        self.tracer = tracer
        self.capture = capture_content
        self.t = Transcript(messages=[], stop_reason="answer")

    async def _chat(self, params: dict[str, Any]) -> tuple[ChatResult, bool]:
        messages = list(self.t.messages)

        def retried(_attempt: int, _exc: BaseException) -> None:
            self.t.retries += 1

        async def once() -> tuple[ChatResult, bool]:
            if isinstance(self.model, CachedModel):
                return await self.model.chat_cached(messages, **params)
            return await self.model.chat(messages, **params), False

        return await call_with_retries(
            once,
            retries=self.limits.retries,
            backoff=self.limits.retry_backoff,
            on_retry=retried,
        )

    async def turn(self, seed: int) -> bool:
        """One model call and its tool calls; False when the agent has answered."""
        params = sampling_params(self.limits, seed) | {"max_tokens": self.limits.max_output_tokens}
        if self.env.tools:
            params["tools"] = self.env.specs()
        with semconv.chat_span(
            self.tracer,
            self.model.name,
            input_messages=self.t.messages,
            capture_content=self.capture,
            attributes={
                semconv.GEN_AI_REQUEST_TEMPERATURE: self.limits.temperature,
                semconv.GEN_AI_REQUEST_MAX_TOKENS: self.limits.max_output_tokens,
                **({ATTR_TOP_P: self.limits.top_p} if self.limits.top_p is not None else {}),
            },
        ) as span:
            result, hit = await self._chat(params)
            message = _assistant_message(result)
            semconv.set_response(
                span,
                finish_reasons=[result.finish_reason],
                input_tokens=result.prompt_tokens,
                output_tokens=result.completion_tokens,
                output_messages=[message],
                capture_content=self.capture,
            )
            span.set_attribute(ATTR_CACHE_HIT, hit)
        self.t.model_calls += 1
        self.t.cache_hits += int(hit)
        self.t.input_tokens += result.prompt_tokens
        self.t.output_tokens += result.completion_tokens
        self.t.messages.append(message)
        for call in message.get("tool_calls", []):
            await self._run_tool(call)
        return bool(result.tool_calls)

    async def _run_tool(self, call: dict[str, Any]) -> None:
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        arguments = function.get("arguments")
        with semconv.tool_span(
            self.tracer,
            name,
            call_id=call.get("id"),
            arguments=arguments,
            capture_content=self.capture,
        ) as span:
            output = await self.env.acall(name, arguments)
            semconv.set_tool_result(span, output, capture_content=self.capture)
        self.t.messages.append(
            {"role": "tool", "tool_call_id": call.get("id"), "name": name, "content": output}
        )

    async def run(self, sample: Sample) -> Transcript:
        self.t.messages = [dict(m) for m in sample.messages]
        scope = asyncio.timeout(self.limits.timeout_s)
        try:
            async with scope:
                await self._loop(sample.seed)
        except TimeoutError:
            if not scope.expired():
                raise  # a model's own timeout, after its retries: an error, not our limit
            self.t.stop_reason = "timeout"
        return self.t

    async def _loop(self, seed: int) -> None:
        while True:
            if self.t.turns >= self.limits.max_turns:
                self.t.stop_reason = "max_turns"
                return
            if self.t.input_tokens + self.t.output_tokens >= self.limits.max_tokens:
                self.t.stop_reason = "max_tokens"
                return
            self.t.turns += 1
            with self.tracer.start_as_current_span(TURN_SPAN, attributes={ATTR_TURN: self.t.turns}):
                more = await self.turn(seed)
            if not more:
                self.t.stop_reason = "answer"
                return


def _assistant_message(result: ChatResult) -> Message:
    message: Message = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["tool_calls"] = [_normal_call(c, i) for i, c in enumerate(result.tool_calls)]
    return message


def _normal_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    """The OpenAI tool-call shape, whatever the provider left out."""
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        function["arguments"] = json.dumps(arguments or {})
    return {"id": call.get("id") or f"call_{index}", "type": "function", "function": function}


async def run_agent(
    model: ChatModel,
    sample: Sample,
    env: Environment,
    tracer: Tracer,
    *,
    limits: AgentLimits | None = None,
    capture_content: bool = False,
) -> Transcript:
    """Run one sample to its end; model errors other than transient ones propagate."""
    loop = _Loop(model, env, limits or AgentLimits(), tracer, capture_content)
    return await loop.run(sample)
