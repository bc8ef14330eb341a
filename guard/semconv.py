"""Span names and attributes: the OpenTelemetry GenAI semantic conventions plus ``labelgate.*``.

The ``gen_ai.*`` names come from ``opentelemetry-semantic-conventions`` (its incubating GenAI
module) so they follow upstream. The helpers open spans named as the conventions ask
(``chat {model}``, ``execute_tool {name}``, ``invoke_agent {name}``) with the right kind.

Message content (prompts, answers, tool arguments and results) is sensitive: it is recorded
only when the caller passes ``capture_content=True`` (``TracingConfig.capture_content``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from labelgate.guard.labels import Label

# --------------------------------------------------------------------------- gen_ai.*
GEN_AI_OPERATION_NAME = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_TEMPERATURE = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_MAX_TOKENS = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_STREAM = _gen_ai.GEN_AI_REQUEST_STREAM
GEN_AI_RESPONSE_MODEL = _gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID = _gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_USAGE_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_TOOL_NAME = _gen_ai.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID = _gen_ai.GEN_AI_TOOL_CALL_ID
GEN_AI_TOOL_TYPE = _gen_ai.GEN_AI_TOOL_TYPE
GEN_AI_TOOL_CALL_ARGUMENTS = _gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS  # content: opt-in
GEN_AI_TOOL_CALL_RESULT = _gen_ai.GEN_AI_TOOL_CALL_RESULT  # content: opt-in
GEN_AI_AGENT_NAME = _gen_ai.GEN_AI_AGENT_NAME
GEN_AI_AGENT_ID = _gen_ai.GEN_AI_AGENT_ID
GEN_AI_CONVERSATION_ID = _gen_ai.GEN_AI_CONVERSATION_ID
GEN_AI_INPUT_MESSAGES = _gen_ai.GEN_AI_INPUT_MESSAGES  # content: opt-in
GEN_AI_OUTPUT_MESSAGES = _gen_ai.GEN_AI_OUTPUT_MESSAGES  # content: opt-in
ERROR_TYPE = _error.ERROR_TYPE

OP_CHAT = _gen_ai.GenAiOperationNameValues.CHAT.value
OP_EXECUTE_TOOL = _gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
OP_INVOKE_AGENT = _gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value

CONTENT_ATTRIBUTES = frozenset(
    {
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
    }
)

# --------------------------------------------------------------------------- labelgate.*
LABEL = "labelgate.label"  # the compact human form, e.g. "secret/untrusted src=web"
LABEL_CONFIDENTIALITY = "labelgate.label.confidentiality"
LABEL_INTEGRITY = "labelgate.label.integrity"
LABEL_READERS = "labelgate.label.readers"
LABEL_CATEGORIES = "labelgate.label.categories"
LABEL_SOURCES = "labelgate.label.sources"
DECISION_ACTION = "labelgate.decision.action"
DECISION_RULE = "labelgate.decision.rule"
DECISION_REASON = "labelgate.decision.reason"
DECISION_SINK = "labelgate.decision.sink"
DECISION_EVENT = "labelgate.decision"
SESSION_ID = "labelgate.session.id"
REQUEST_ID = "labelgate.request.id"
# Model calls the guard made for the request: propagator re-queries and the data-only replay
GUARD_MODEL_CALLS = "labelgate.guard.model_calls"

Message = Mapping[str, Any]


def label_attributes(label: Label) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        LABEL: label.short(),
        LABEL_CONFIDENTIALITY: label.confidentiality.name,
        LABEL_INTEGRITY: label.integrity.name,
        LABEL_CATEGORIES: sorted(label.categories),
        LABEL_SOURCES: sorted(label.sources),
    }
    if label.readers is not None:  # absent means everyone; an empty list would mean no one
        attrs[LABEL_READERS] = sorted(label.readers)
    return attrs


def decision_attributes(
    action: str, *, rule: str | None = None, reason: str = "", sink: str | None = None
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {DECISION_ACTION: action, DECISION_REASON: reason}
    if rule is not None:
        attrs[DECISION_RULE] = rule
    if sink is not None:
        attrs[DECISION_SINK] = sink
    return attrs


def record_decision(
    span: Span,
    action: str,
    *,
    rule: str | None = None,
    reason: str = "",
    sink: str | None = None,
    label: Label | None = None,
) -> None:
    """Put a policy decision on the span (attributes) and in its timeline (an event, with the
    label of what was decided). The span's own label is the caller's to set (``set_label``):
    a span may hold decisions on several labels (prompt items, the answer)."""
    attrs = decision_attributes(action, rule=rule, reason=reason, sink=sink)
    span.set_attributes(attrs)
    span.add_event(DECISION_EVENT, attrs | label_attributes(label) if label is not None else attrs)


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if message.get("role") == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        )
        return parts
    if isinstance(content, str) and content:
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):  # OpenAI content parts
        parts.extend({"type": "text", "content": p.get("text")} for p in content if "text" in p)
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return parts


def messages_attribute(messages: Sequence[Message]) -> str:
    """OpenAI-style chat messages as the conventions' JSON (role + typed parts)."""
    converted = [{"role": m.get("role", "user"), "parts": _parts(m)} for m in messages]
    return json.dumps(converted, ensure_ascii=False)


@contextmanager
def _span(
    tracer: Tracer, name: str, kind: SpanKind, attributes: dict[str, AttributeValue]
) -> Iterator[Span]:
    with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
        try:
            yield span
        except BaseException as exc:
            # The SDK records the exception and the error status; the conventions add this.
            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            raise


def _common(
    label: Label | None, extra: Mapping[str, AttributeValue] | None
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = dict(extra or {})
    if label is not None:
        attrs |= label_attributes(label)
    return attrs


def chat_span(
    tracer: Tracer,
    model: str,
    *,
    provider: str | None = None,
    conversation_id: str | None = None,
    input_messages: Sequence[Message] | None = None,
    capture_content: bool = False,
    label: Label | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span]:
    """A ``chat {model}`` CLIENT span for one model call."""
    attrs = _common(label, attributes)
    attrs |= {GEN_AI_OPERATION_NAME: OP_CHAT, GEN_AI_REQUEST_MODEL: model}
    if provider is not None:
        attrs[GEN_AI_PROVIDER_NAME] = provider
    if conversation_id is not None:
        attrs[GEN_AI_CONVERSATION_ID] = conversation_id
    if capture_content and input_messages is not None:
        attrs[GEN_AI_INPUT_MESSAGES] = messages_attribute(input_messages)
    return _span(tracer, f"{OP_CHAT} {model}", SpanKind.CLIENT, attrs)


def tool_span(
    tracer: Tracer,
    name: str,
    *,
    call_id: str | None = None,
    tool_type: str = "function",
    arguments: Any = None,
    capture_content: bool = False,
    label: Label | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span]:
    """An ``execute_tool {name}`` INTERNAL span for one tool call."""
    attrs = _common(label, attributes)
    attrs |= {
        GEN_AI_OPERATION_NAME: OP_EXECUTE_TOOL,
        GEN_AI_TOOL_NAME: name,
        GEN_AI_TOOL_TYPE: tool_type,
    }
    if call_id is not None:
        attrs[GEN_AI_TOOL_CALL_ID] = call_id
    if capture_content and arguments is not None:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        attrs[GEN_AI_TOOL_CALL_ARGUMENTS] = text
    return _span(tracer, f"{OP_EXECUTE_TOOL} {name}", SpanKind.INTERNAL, attrs)


def agent_span(
    tracer: Tracer,
    name: str,
    *,
    agent_id: str | None = None,
    conversation_id: str | None = None,
    remote: bool = False,
    label: Label | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span]:
    """An ``invoke_agent {name}`` span: CLIENT for a remote agent, INTERNAL in-process."""
    attrs = _common(label, attributes)
    attrs |= {GEN_AI_OPERATION_NAME: OP_INVOKE_AGENT, GEN_AI_AGENT_NAME: name}
    if agent_id is not None:
        attrs[GEN_AI_AGENT_ID] = agent_id
    if conversation_id is not None:
        attrs[GEN_AI_CONVERSATION_ID] = conversation_id
    kind = SpanKind.CLIENT if remote else SpanKind.INTERNAL
    return _span(tracer, f"{OP_INVOKE_AGENT} {name}", kind, attrs)


def set_response(
    span: Span,
    *,
    model: str | None = None,
    response_id: str | None = None,
    finish_reasons: Sequence[str] | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    output_messages: Sequence[Message] | None = None,
    capture_content: bool = False,
) -> None:
    """What came back from the model: response model, usage, and (opt-in) the answer."""
    attrs: dict[str, AttributeValue] = {}
    if model is not None:
        attrs[GEN_AI_RESPONSE_MODEL] = model
    if response_id is not None:
        attrs[GEN_AI_RESPONSE_ID] = response_id
    if finish_reasons is not None:
        attrs[GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
    if input_tokens is not None:
        attrs[GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if capture_content and output_messages is not None:
        attrs[GEN_AI_OUTPUT_MESSAGES] = messages_attribute(output_messages)
    span.set_attributes(attrs)


def set_tool_result(span: Span, result: Any, *, capture_content: bool = False) -> None:
    if capture_content:
        text = result if isinstance(result, str) else json.dumps(result)
        span.set_attribute(GEN_AI_TOOL_CALL_RESULT, text)


def set_label(span: Span, label: Label) -> None:
    span.set_attributes(label_attributes(label))
