"""What the label guard leaves behind for each request: audit records and one span.

Per request, once it has ended (``LabelGuardHook.finish``):

- one ``RequestRecord`` (ok | denied | error, the strictest action, the answer's label, tokens,
  duration, the trace id);
- a ``MessageRecord`` per labeled input item (label and provenance), the answer last (its label,
  how it got it, the tool calls the model proposed with what became of each);
- a ``DecisionRecord`` per sink decision (same id as in ``X-Labelgate-Decisions``);
- one ``chat {model}`` span (GenAI attributes, ``labelgate.*`` label and decision attributes,
  a ``labelgate.decision`` event per decision), a child of the client's ``traceparent``,
  recorded after the fact (``guard.recorded_spans``).

Records go through ``AuditWriter.asubmit_many`` (one queue item per request, one wake-up of the
writer thread, one transaction, the span's row included): never a disk write on the event
loop. Content goes into spans only with
``capture_content`` (spans may leave over OTLP); the local audit store keeps it, because a
person reviewing a denial needs the text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from guard import semconv
from guard.audit.records import AuditRecord, DecisionRecord, MessageRecord, RequestRecord
from guard.audit.writer import AuditWriter
from guard.engine import Review, propagation_provenance
from guard.items import ItemKind, LabeledItem, LabelOrigin, Provenance
from guard.labels import Label
from guard.policy import Decision
from guard.policy.spec import STRICTNESS
from guard.recorded_spans import RecordedSpan, RecordedSpans
from proxy.context import RequestContext
from proxy.guard_hook import Outcome
from proxy.screening import screened


def strictest(decisions: Sequence[Decision]) -> str | None:
    if not decisions:
        return None
    return max((d.action for d in decisions), key=STRICTNESS.__getitem__).value


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


def targets(review: Review) -> list[tuple[str, Decision]]:
    """(target, decision): ``response`` for the answer's text, else the tool call's id."""
    found = [("response", review.response)] if review.response else []
    return found + [(t.call.id, t.decision) for t in review.tool_calls]


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

    async def record(self, ctx: RequestContext, outcome: Outcome) -> None:
        try:
            decisions = decided(ctx)
            span = self._span(ctx, outcome, decisions)
            if self.writer is None:
                return
            if span is None:
                records = self._records(ctx, outcome, decisions, ctx.trace_id, None)
            else:
                context = span.get_span_context()
                trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
                records = self._records(ctx, outcome, decisions, trace_id, span_id)
                if span.sampled and self.spans is not None and self.spans.stores_records:
                    records.append(span.record())  # same transaction as the request's rows
            await self.writer.asubmit_many(records)  # one wake-up of the writer per request
        except Exception as exc:
            self.failure = exc
            raise

    # ------------------------------------------------------------------ audit records

    def _records(
        self,
        ctx: RequestContext,
        outcome: Outcome,
        decisions: list[Decided],
        trace_id: str | None,
        span_id: str | None,
    ) -> list[AuditRecord]:
        review: Review | None = ctx.state.get("review")
        items: list[LabeledItem] = ctx.state.get("items", [])
        action = strictest([decision for _, decision, _ in decisions])
        status = outcome.status
        if status == "ok" and action == "deny":
            status = "denied"
        usage = (outcome.response or {}).get("usage") or {}
        duration = (outcome.ended - ctx.started) * 1000
        request = RequestRecord(
            id=ctx.request_id,
            trace_id=trace_id,
            session_id=ctx.session_id,
            agent=ctx.caller.agent_id,
            model=ctx.model or None,
            started=datetime.now(UTC) - timedelta(milliseconds=duration),
            duration_ms=round(duration, 3),
            status=status,
            label=review.label.to_dict() if review else None,
            decision=action,
            error=outcome.error.message if outcome.error else None,
            input_tokens=_int(usage.get("prompt_tokens")),
            output_tokens=_int(usage.get("completion_tokens")),
        )
        records: list[AuditRecord] = [request]
        records += [MessageRecord.from_item(i, ctx.request_id, n) for n, i in enumerate(items)]
        if review is not None and ctx.endpoint == "chat.completions":
            records.append(self._answer(ctx, outcome, review, len(items)))
        created = datetime.now(UTC)
        records += [
            DecisionRecord(
                id=decision.id,
                request_id=ctx.request_id,
                trace_id=trace_id,
                span_id=span_id,
                sink=sink,
                action=decision.action.value,
                rule_chain=[c.model_dump(mode="json") for c in decision.chain],
                reason=decision.reason,
                label=label.to_dict(),
                created=created,
            )
            for sink, decision, label in decisions
        ]
        return records

    def _answer(
        self, ctx: RequestContext, outcome: Outcome, review: Review, position: int
    ) -> MessageRecord:
        sent = _message(outcome.response) if outcome.status == "ok" else {}
        proposed = [
            {
                "id": t.call.id,
                "name": t.call.name,
                "arguments": t.arguments,
                "action": t.decision.action.value,
                "decision_id": t.decision.id,
            }
            for t in review.tool_calls
        ]
        why = (
            propagation_provenance(review.propagation)
            if review.propagation is not None
            else Provenance(LabelOrigin.PROPAGATION, "join of the inputs' labels", ref="join")
        )
        return MessageRecord(
            request_id=ctx.request_id,
            position=position,
            role="assistant",
            kind=ItemKind.OUTPUT.value,
            content=_text(sent.get("content")) or None,
            label=review.label.to_dict(),
            provenance=[why.to_dict()],
            tool_calls=proposed or None,
        )

    # ------------------------------------------------------------------ span

    def _span(
        self, ctx: RequestContext, outcome: Outcome, decisions: list[Decided]
    ) -> RecordedSpan | None:
        """One span per request, recorded once it has ended (None: no tracing, or sampled
        out)."""
        if self.spans is None:
            return None
        operation = "embeddings" if ctx.endpoint == "embeddings" else semconv.OP_CHAT
        end_ns = time.time_ns()
        span = self.spans.start(
            f"{operation} {ctx.model}".strip(),
            kind=SpanKind.CLIENT,
            start_ns=end_ns - int((time.perf_counter() - ctx.started) * 1e9),
            traceparent=ctx.traceparent,
            attributes=self._attributes(ctx, outcome, operation),
        )
        if span is None:
            return None
        for sink, decision, label in decisions:
            semconv.record_decision(
                span,
                decision.action.value,
                rule=decision.rule,
                reason=decision.reason,
                sink=sink,
                label=label,
            )
        review: Review | None = ctx.state.get("review")
        if review is not None:
            semconv.set_label(span, review.label)
            action = strictest([decision for _, decision, _ in decisions])
            if action is not None:
                span.set_attribute(semconv.DECISION_ACTION, action)
        self._response(span, outcome)
        span.end(end_time=end_ns)
        return span

    def _attributes(
        self, ctx: RequestContext, outcome: Outcome, operation: str
    ) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_REQUEST_MODEL: ctx.model,
            semconv.GEN_AI_CONVERSATION_ID: ctx.session_id,
            semconv.GEN_AI_AGENT_ID: ctx.caller.agent_id,
            semconv.GEN_AI_REQUEST_STREAM: ctx.stream,
            semconv.REQUEST_ID: ctx.request_id,
            semconv.SESSION_ID: ctx.session_id,
        }
        request = outcome.request
        messages = getattr(request, "messages", None)
        if self.capture_content and messages is not None:
            dumped = [m.model_dump(exclude_none=True) for m in messages]
            attrs[semconv.GEN_AI_INPUT_MESSAGES] = semconv.messages_attribute(dumped)
        return attrs

    def _response(self, span: Any, outcome: Outcome) -> None:
        if outcome.error is not None:
            span.set_attribute(semconv.ERROR_TYPE, outcome.error.type)
            span.set_status(Status(StatusCode.ERROR, outcome.error.message))
            return
        response = outcome.response or {}
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
