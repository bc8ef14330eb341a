"""Export a stored trace: OTLP/JSON (what an OTLP/HTTP collector accepts) or JSON lines.

OTLP/JSON follows the protobuf JSON mapping with OTLP's exceptions: trace and span ids are
hex (not base64), enums are integers, 64-bit integers (times, ``intValue``) are decimal
strings, and attribute values are typed ``AnyValue`` objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from labelgate.guard.audit.views import DecisionView, RequestView, SpanView, TraceView

# opentelemetry.proto.trace.v1.Span.SpanKind and Status.StatusCode
SPAN_KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS_CODE = {"unset": 0, "ok": 1, "error": 2}


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue``. bool before int: ``True`` is an ``int`` in Python."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"stringValue": "" if value is None else str(value)}


def key_values(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def otlp_span(span: SpanView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": SPAN_KIND.get(span.kind, 0),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": key_values(span.attributes),
        "events": [
            {
                "timeUnixNano": str(e.get("timestamp_ns", 0)),
                "name": e.get("name", ""),
                "attributes": key_values(e.get("attributes") or {}),
            }
            for e in span.events
        ],
        "status": {"code": STATUS_CODE.get(span.status, 0)},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    if span.status_message:
        out["status"]["message"] = span.status_message
    return out


def to_otlp_json(trace: TraceView) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest``: spans grouped by resource, then by scope."""
    groups: dict[str, dict[str, list[SpanView]]] = {}
    resources: dict[str, dict[str, Any]] = {}
    for span in trace.spans:
        key = json.dumps(span.resource, sort_keys=True)
        resources[key] = span.resource
        groups.setdefault(key, {}).setdefault(span.scope or "", []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": key_values(resources[key])},
                "scopeSpans": [
                    {"scope": {"name": scope}, "spans": [otlp_span(s) for s in spans]}
                    for scope, spans in scopes.items()
                ],
            }
            for key, scopes in groups.items()
        ]
    }


def _flat_span(span: SpanView) -> dict[str, Any]:
    data = span.model_dump(exclude={"children", "request", "decisions", "offset_ms"})
    return {"type": "span", **data, "duration_ms": span.duration_ms}


def _request_lines(request: RequestView) -> Iterator[dict[str, Any]]:
    yield {"type": "request", **request.model_dump(exclude={"messages", "decisions"})}
    for message in request.messages:
        yield {"type": "message", "request_id": request.id, **message.model_dump()}
    for decision in request.decisions:
        yield _decision_line(decision)


def _decision_line(decision: DecisionView) -> dict[str, Any]:
    return {"type": "decision", **decision.model_dump(), "rule": decision.rule}


def to_json_lines(trace: TraceView) -> Iterator[str]:
    """One JSON object a line: every span (``"type": "span"``), then each request of the trace
    with its messages (label and evidence) and decisions (rule chain and reason)."""
    for span in trace.spans:
        yield json.dumps(_flat_span(span), ensure_ascii=False, default=str)
    requests = [s.request for s in trace.spans if s.request is not None] + trace.requests
    for request in requests:
        for line in _request_lines(request):
            yield json.dumps(line, ensure_ascii=False, default=str)
