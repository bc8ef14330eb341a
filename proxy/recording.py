"""What the label guard leaves behind for each request: audit records and one span.

Per request, once it has ended (``PolicyHook.finish``):

- one ``RequestRecord`` (ok | denied | error, the strictest action, the answer's label, tokens,
  duration, the trace id);
- a ``MessageRecord`` per labeled input item (label and provenance), the answer last (its label,
  how it got it, the tool calls the model proposed with what became of each);
- a ``DecisionRecord`` per sink decision (same id as in ``X-Labelgate-Decisions``);
- one ``chat {model}`` span (GenAI attributes, ``labelgate.*`` label and decision attributes,
  a ``labelgate.decision`` event per decision), a child of the client's ``traceparent``,
  recorded after the fact (``guard.recorded_spans``).

The request's ``RequestTrail`` (what all of this is made of: the items, the decisions, the
answer, the span's identity) is taken on the event loop in a few microseconds and handed to the
``AuditWriter`` as ``DeferredRecords``: its thread pickles it to the audit process (by default),
which builds the records and the span's row and writes them in one transaction, so the
server's process spends no GIL time on them. With exporters other than ``sqlite`` (OTLP,
console, memory) the span is also built here and exported when it ends. Content goes into
spans only with ``capture_content`` (spans may leave over OTLP); the local audit store keeps
it, because a person reviewing a denial needs the text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from labelgate.guard import semconv
from labelgate.guard.audit.records import (
    AuditRecord,
    DecisionRecord,
    DeferredRecords,
    MessageRecord,
    RequestRecord,
)
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.engine import Review, propagation_provenance
from labelgate.guard.items import ItemKind, LabeledItem, LabelOrigin, LabelReason
from labelgate.guard.labels import Label
from labelgate.guard.policy import Decision
from labelgate.guard.policy.spec import STRICTNESS
from labelgate.guard.recorded_spans import RecordedSpan, RecordedSpans, SpanStart
from labelgate.proxy.context import RequestContext
from labelgate.proxy.errors import ProxyError
from labelgate.proxy.hook import Outcome
from labelgate.proxy.screening import screened

_RANK = {action.value: rank for action, rank in STRICTNESS.items()}


def strictest(actions: Sequence[str]) -> str | None:
    """The strictest of some actions (values of ``Action``)."""
    if not actions:
        return None
    return max(actions, key=_RANK.__getitem__)


def sink_name(target: str, review: Review, recipient: str | None) -> str:
    if target == "response":
        return f"answer:{recipient or 'client'}"
    names = {t.call.id: t.call.name for t in review.tool_calls}
    return f"tool:{names.get(target, target)}"


Decided = tuple[str, Decision, Label]  # (sink, decision, label of what was decided)


def decided(ctx: RequestContext) -> list[Decided]:
    """Every decision of a request as (sink, decision, label of what was decided): the prompt
    sink's first (they come before the call), then the answer's and its tool calls'."""
    found = [(s.target, s.decision, s.item.label) for s in screened(ctx)]
    review: Review | None = ctx.state.get("review")
    if review is not None:
        recipient = ctx.state.get("recipient")
        found += [
            (sink_name(target, review, recipient), decision, review.label)
            for target, decision in targets(review)
        ]
    return found


GUARD_CALLS_HEADER = "x-labelgate-guard-calls"


def guard_model_calls(ctx: RequestContext) -> int:
    """Model calls the guard made for the request: the propagator's re-queries (capped by its
    budget, memoised) and the data-only replay (at most one)."""
    review: Review | None = ctx.state.get("review")
    propagated = review.propagation.model_calls if review and review.propagation else 0
    return propagated + int(ctx.state.get("replays", 0))


def targets(review: Review) -> list[tuple[str, Decision]]:
    """(target, decision): ``response`` for the answer's text, else the tool call's id."""
    found = [("response", review.response)] if review.response else []
    return found + [(t.call.id, t.decision) for t in review.tool_calls]


@dataclass(slots=True)
class DecisionTrail:
    """A decision as its record and span event need it (a ``Decision`` is a pydantic model,
    slow to pickle)."""

    sink: str
    id: str
    action: str
    rule: str | None
    reason: str
    chain: list[dict[str, Any]]
    label: Label


@dataclass(slots=True)
class RequestTrail(DeferredRecords):
    """A finished request as its records and span row are made of: taken on the event loop
    in a few microseconds, turned into records by the audit writer (in its child process by
    default), so that building them costs the server nothing."""

    request_id: str
    session_id: str
    agent: str
    model: str
    endpoint: str
    stream: bool
    started: datetime
    duration_ms: float
    end_ns: int
    status: str
    error: tuple[str, str] | None  # (type, message)
    response: dict[str, Any] | None  # the answer as sent
    items: list[LabeledItem]
    label: Label | None  # the answer's
    answered: bool  # a chat answer: its message record goes last
    why: LabelReason | None  # how the answer got its label
    tool_calls: list[dict[str, Any]]
    guard_calls: int  # model calls the guard made for it (``guard_model_calls``)
    decisions: list[DecisionTrail]
    trace_id: str | None
    span: SpanStart | None  # the request's span (its row goes with the records)
    store_span: bool
    capture_content: bool
    input_messages: list[dict[str, Any]] | None  # with ``capture_content`` only

    @classmethod
    def of(
        cls,
        ctx: RequestContext,
        outcome: Outcome,
        spans: RecordedSpans | None,
        capture_content: bool,
    ) -> RequestTrail:
        review: Review | None = ctx.state.get("review")
        duration = (outcome.ended - ctx.started) * 1000
        end_ns = time.time_ns()
        span = None
        if spans is not None:
            span = spans.start(
                f"{_operation(ctx.endpoint)} {ctx.model}".strip(),
                kind=SpanKind.CLIENT,
                start_ns=end_ns - int(duration * 1e6),
                traceparent=ctx.traceparent,
            )
        messages = getattr(outcome.request, "messages", None)
        return cls(
            request_id=ctx.request_id,
            session_id=ctx.session_id,
            agent=ctx.caller.agent_id,
            model=ctx.model,
            endpoint=ctx.endpoint,
            stream=ctx.stream,
            started=datetime.now(UTC) - timedelta(milliseconds=duration),
            duration_ms=round(duration, 3),
            end_ns=end_ns,
            status=outcome.status,
            error=(outcome.error.type, outcome.error.message) if outcome.error else None,
            response=outcome.response,
            items=list(ctx.state.get("items", [])),
            label=review.label if review else None,
            answered=review is not None and ctx.endpoint == "chat.completions",
            why=_why(review) if review else None,
            tool_calls=_proposed(review) if review else [],
            guard_calls=guard_model_calls(ctx),
            decisions=[
                DecisionTrail(
                    sink,
                    decision.id,
                    decision.action.value,
                    decision.rule,
                    decision.reason,
                    [c.model_dump(mode="json") for c in decision.chain],
                    label,
                )
                for sink, decision, label in decided(ctx)
            ],
            trace_id=ctx.trace_id,
            span=span,
            store_span=spans is not None and spans.stores_records and bool(span and span.sampled),
            capture_content=capture_content,
            input_messages=(
                [m.model_dump(exclude_none=True) for m in messages]
                if capture_content and messages is not None
                else None
            ),
        )

    def __len__(self) -> int:
        return 1 + len(self.items) + self.answered + len(self.decisions) + self.store_span

    @property
    def journal_key(self) -> str:
        return self.request_id

    # ------------------------------------------------------------------ built by the writer
    def records(self) -> list[AuditRecord]:
        trace_id, span_id = self.trace_id, None
        if self.span is not None:
            context = self.span.context
            trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        action = strictest([d.action for d in self.decisions])
        status = "denied" if self.status == "ok" and action == "deny" else self.status
        usage = (self.response or {}).get("usage") or {}
        records: list[AuditRecord] = [
            RequestRecord(
                id=self.request_id,
                trace_id=trace_id,
                session_id=self.session_id,
                agent=self.agent,
                model=self.model or None,
                started=self.started,
                duration_ms=self.duration_ms,
                status=status,
                label=self.label.to_dict() if self.label else None,
                decision=action,
                error=self.error[1] if self.error else None,
                input_tokens=_int(usage.get("prompt_tokens")),
                output_tokens=_int(usage.get("completion_tokens")),
            )
        ]
        records += [
            MessageRecord.from_item(i, self.request_id, n) for n, i in enumerate(self.items)
        ]
        if self.answered:
            records.append(self._answer())
        records += [
            DecisionRecord(
                id=d.id,
                request_id=self.request_id,
                trace_id=trace_id,
                span_id=span_id,
                sink=d.sink,
                action=d.action,
                rule_chain=d.chain,
                reason=d.reason,
                label=d.label.to_dict(),
            )
            for d in self.decisions
        ]
        if self.store_span and self.span is not None:
            span = RecordedSpan(self.span, self.span_attributes())
            self.decorate(span)
            records.append(span.record())
        return records

    def _answer(self) -> MessageRecord:
        sent = _message(self.response) if self.status == "ok" else {}
        return MessageRecord(
            request_id=self.request_id,
            position=len(self.items),
            role="assistant",
            kind=ItemKind.OUTPUT.value,
            content=_text(sent.get("content")) or None,
            label=self.label.to_dict() if self.label else None,
            provenance=[self.why.to_dict()] if self.why else [],
            tool_calls=self.tool_calls or None,
        )

    # ------------------------------------------------------------------ the span
    def span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            semconv.GEN_AI_OPERATION_NAME: _operation(self.endpoint),
            semconv.GEN_AI_REQUEST_MODEL: self.model,
            semconv.GEN_AI_CONVERSATION_ID: self.session_id,
            semconv.GEN_AI_AGENT_ID: self.agent,
            semconv.GEN_AI_REQUEST_STREAM: self.stream,
            semconv.REQUEST_ID: self.request_id,
            semconv.SESSION_ID: self.session_id,
            semconv.GUARD_MODEL_CALLS: self.guard_calls,
        }
        if self.input_messages is not None:
            attrs[semconv.GEN_AI_INPUT_MESSAGES] = semconv.messages_attribute(self.input_messages)
        return attrs

    def decorate(self, span: RecordedSpan) -> None:
        """Decisions, label and response on the span, then its end."""
        for d in self.decisions:
            semconv.record_decision(
                span, d.action, rule=d.rule, reason=d.reason, sink=d.sink, label=d.label
            )
        if self.label is not None:
            semconv.set_label(span, self.label)
            action = strictest([d.action for d in self.decisions])
            if action is not None:
                span.set_attribute(semconv.DECISION_ACTION, action)
        self._response(span)
        span.end(end_time=self.end_ns)

    def _response(self, span: RecordedSpan) -> None:
        if self.error is not None:
            kind, detail = self.error
            span.set_attribute(semconv.ERROR_TYPE, kind)
            span.set_status(Status(StatusCode.ERROR, detail))
            return
        response = self.response or {}
        usage = response.get("usage") or {}
        choices = response.get("choices") or []
        finish = [c.get("finish_reason") or "" for c in choices if isinstance(c, dict)]
        message = _message(response)
        semconv.set_response(
            span,
            model=response.get("model"),
            response_id=response.get("id"),
            finish_reasons=finish if choices else None,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            output_messages=[message] if message else None,
            capture_content=self.capture_content,
        )


def _operation(endpoint: str) -> str:
    return "embeddings" if endpoint == "embeddings" else semconv.OP_CHAT


def _why(review: Review) -> LabelReason:
    if review.propagation is not None:
        return propagation_provenance(review.propagation)
    return LabelReason(LabelOrigin.PROPAGATION, "join of the inputs' labels", ref="join")


def _proposed(review: Review) -> list[dict[str, Any]]:
    return [
        {
            "id": t.call.id,
            "name": t.call.name,
            "arguments": t.arguments,
            "action": t.decision.action.value,
            "decision_id": t.decision.id,
        }
        for t in review.tool_calls
    ]


_AHEAD = "recording.ahead"  # ctx.state: (outcome, trail) journaled before the answer left


def _interrupted(ctx: RequestContext) -> Outcome:
    """What to record of a stream if the process dies before it ends."""
    error = ProxyError(
        499, "the gateway stopped before this streamed answer ended", type="interrupted"
    )
    return Outcome("error", None, error=error)


class Recorder:
    def __init__(
        self,
        writer: AuditWriter | None = None,
        spans: RecordedSpans | None = None,
        *,
        capture_content: bool = False,
    ) -> None:
        self.writer = writer
        self.spans = spans
        self.capture_content = capture_content
        self.failure: BaseException | None = None

    def admit(self) -> None:
        """Raise unless a request can be recorded: the writer accepts records and no record
        has failed (answers are recorded after they are sent, so a failure stops the next)."""
        if self.failure is not None:
            raise RuntimeError(f"a request could not be recorded: {self.failure!r}")
        if self.writer is not None:
            self.writer.check()

    def write_ahead(self, ctx: RequestContext, outcome: Outcome | None) -> None:
        """Before an answer leaves (``outcome``) or a stream's first byte (None): journal the
        request's records (``AuditWriter.write_ahead``), so they are stored even if the
        process dies before the writer gets to them. For a stream's first byte, the records
        of an interrupted stream: the real ones, journaled before its last event, replace
        them. Raises (fail closed) when they cannot be recorded."""
        self.admit()
        if self.writer is None or not self.writer.journals:
            return
        try:
            if outcome is None:
                trail = RequestTrail.of(ctx, _interrupted(ctx), self.spans, self.capture_content)
            else:
                trail = RequestTrail.of(ctx, outcome, self.spans, self.capture_content)
                ctx.state[_AHEAD] = (outcome, trail)  # ``record`` submits this same trail
            self.writer.write_ahead(trail)
        except Exception as exc:
            self.failure = exc
            raise

    async def record(self, ctx: RequestContext, outcome: Outcome) -> None:
        try:
            ahead: tuple[Outcome, RequestTrail] | None = ctx.state.pop(_AHEAD, None)
            if ahead is not None and ahead[0] is outcome:
                trail = ahead[1]
            else:
                trail = RequestTrail.of(ctx, outcome, self.spans, self.capture_content)
            if trail.span is not None and self.spans is not None and self.spans.exports:
                trail.decorate(self.spans.open(trail.span, trail.span_attributes()))
            if self.writer is not None:
                await self.writer.asubmit(trail)  # built by the writer, off this process
        except Exception as exc:
            self.failure = exc
            raise


def _message(response: dict[str, Any] | None) -> dict[str, Any]:
    choices = (response or {}).get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    return message if isinstance(message, dict) else {}


def _int(value: Any) -> int | None:
    """A token count as the upstream gave it, or None when it is not a whole number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(content: Any) -> str:
    """The text of a message's content, whatever shape the upstream gave it."""
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return "\n".join(p for p in parts if isinstance(p, str))
    return content if isinstance(content, str) else "" if content is None else str(content)
