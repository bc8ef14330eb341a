"""Tracing: GenAI span names and attributes, labelgate attributes, exporters from config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from labelgate.guard import semconv as sc
from labelgate.guard.audit.store import AuditStore
from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.labels import Lattice
from labelgate.guard.tracing import (
    SQLiteSpanExporter,
    TracingConfig,
    exporters_of,
    get_tracer,
    setup_tracing,
)

LATTICE = Lattice()
SECRET_WEB = LATTICE.label("secret", "untrusted", sources=["web:evil.example"])
MESSAGES = [
    {"role": "system", "content": "be helpful"},
    {"role": "user", "content": "my password is hunter2"},
]


@pytest.fixture
def memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = setup_tracing(TracingConfig(exporters=["memory"]))
    exporter = exporters_of(provider)["memory"]
    assert isinstance(exporter, InMemorySpanExporter)
    yield provider, exporter
    provider.shutdown()


def test_semconv_names_are_the_genai_conventions() -> None:
    assert sc.GEN_AI_OPERATION_NAME == "gen_ai.operation.name"
    assert sc.GEN_AI_PROVIDER_NAME == "gen_ai.provider.name"
    assert sc.GEN_AI_REQUEST_MODEL == "gen_ai.request.model"
    assert sc.GEN_AI_USAGE_INPUT_TOKENS == "gen_ai.usage.input_tokens"
    assert sc.GEN_AI_USAGE_OUTPUT_TOKENS == "gen_ai.usage.output_tokens"
    assert sc.GEN_AI_TOOL_CALL_ID == "gen_ai.tool.call.id"
    assert sc.GEN_AI_INPUT_MESSAGES == "gen_ai.input.messages"
    assert (sc.OP_CHAT, sc.OP_EXECUTE_TOOL, sc.OP_INVOKE_AGENT) == (
        "chat",
        "execute_tool",
        "invoke_agent",
    )


def test_chat_tool_and_agent_spans(memory: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = memory
    tracer = get_tracer(provider)
    with sc.agent_span(tracer, "planner", agent_id="a1", conversation_id="s1") as agent:
        with sc.chat_span(
            tracer, "gpt-4o-mini", provider="openai", input_messages=MESSAGES, label=SECRET_WEB
        ) as chat:
            sc.set_response(
                chat,
                model="gpt-4o-mini-2024",
                finish_reasons=["tool_calls"],
                input_tokens=12,
                output_tokens=3,
            )
        with sc.tool_span(tracer, "send_email", call_id="call_1", arguments={"to": "x"}) as tool:
            sc.record_decision(
                tool,
                "deny",
                rule="no-exfil",
                reason="secret data may not leave",
                sink="tool:send_email",
                label=SECRET_WEB,
            )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"invoke_agent planner", "chat gpt-4o-mini", "execute_tool send_email"}

    chat_attrs = spans["chat gpt-4o-mini"].attributes
    assert spans["chat gpt-4o-mini"].kind == SpanKind.CLIENT
    assert chat_attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert chat_attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert chat_attrs[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert chat_attrs[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024"
    assert chat_attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert chat_attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert tuple(chat_attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS]) == ("tool_calls",)
    assert chat_attrs[sc.LABEL_CONFIDENTIALITY] == "secret"
    assert chat_attrs[sc.LABEL_INTEGRITY] == "untrusted"
    assert tuple(chat_attrs[sc.LABEL_SOURCES]) == ("web:evil.example",)
    assert sc.LABEL_READERS not in chat_attrs  # everyone may read: no attribute

    tool = spans["execute_tool send_email"]
    assert tool.kind == SpanKind.INTERNAL
    assert tool.attributes[sc.GEN_AI_TOOL_NAME] == "send_email"
    assert tool.attributes[sc.GEN_AI_TOOL_CALL_ID] == "call_1"
    assert tool.attributes[sc.DECISION_ACTION] == "deny"
    assert tool.attributes[sc.DECISION_RULE] == "no-exfil"
    [event] = tool.events
    assert event.name == sc.DECISION_EVENT
    assert event.attributes[sc.DECISION_REASON] == "secret data may not leave"

    agent = spans["invoke_agent planner"]
    assert agent.attributes[sc.GEN_AI_AGENT_NAME] == "planner"
    assert agent.attributes[sc.GEN_AI_CONVERSATION_ID] == "s1"
    assert spans["chat gpt-4o-mini"].parent.span_id == agent.context.span_id
    assert tool.parent.span_id == agent.context.span_id
    assert agent.resource.attributes["service.name"] == "labelgate"


def test_content_is_not_captured_unless_opted_in(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    tracer = get_tracer(provider)
    for capture in (False, True):
        with sc.chat_span(
            tracer, f"m-{capture}", input_messages=MESSAGES, capture_content=capture
        ) as span:
            sc.set_response(
                span,
                output_messages=[{"role": "assistant", "content": "ok"}],
                capture_content=capture,
            )
        with sc.tool_span(
            tracer, f"t-{capture}", arguments={"q": "hunter2"}, capture_content=capture
        ) as span:
            sc.set_tool_result(span, "result hunter2", capture_content=capture)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("chat m-False", "execute_tool t-False"):
        attrs = spans[name].attributes
        assert not sc.CONTENT_ATTRIBUTES & set(attrs)
        assert "hunter2" not in json.dumps(dict(attrs))
    captured = spans["chat m-True"].attributes
    messages = json.loads(captured[sc.GEN_AI_INPUT_MESSAGES])
    assert messages[1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "my password is hunter2"}],
    }
    assert json.loads(captured[sc.GEN_AI_OUTPUT_MESSAGES])[0]["role"] == "assistant"
    tool = spans["execute_tool t-True"].attributes
    assert json.loads(tool[sc.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"q": "hunter2"}
    assert tool[sc.GEN_AI_TOOL_CALL_RESULT] == "result hunter2"


def test_tool_calls_and_results_in_message_parts() -> None:
    text = sc.messages_attribute(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "search", "arguments": '{"q":"x"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
        ]
    )
    call, result = json.loads(text)
    assert call["parts"] == [
        {"type": "tool_call", "id": "c1", "name": "search", "arguments": '{"q":"x"}'}
    ]
    assert result["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "found"}]


def test_errors_set_status_and_error_type(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = memory
    with pytest.raises(TimeoutError), sc.chat_span(get_tracer(provider), "m"):
        raise TimeoutError("upstream")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "TimeoutError"


def test_sqlite_exporter_stores_spans_with_parent_links(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    writer = AuditWriter(path)
    provider = setup_tracing(TracingConfig(exporters=["sqlite"], service_name="proxy-test"), writer)
    assert isinstance(exporters_of(provider)["sqlite"], SQLiteSpanExporter)
    tracer = get_tracer(provider)
    with (
        sc.agent_span(tracer, "planner") as agent,
        sc.chat_span(tracer, "m", label=SECRET_WEB) as chat,
    ):
        sc.record_decision(chat, "redact", reason="secret in answer")
    trace_id = format(agent.get_span_context().trace_id, "032x")
    assert provider.force_flush(5000)
    provider.shutdown()
    writer.close()

    with AuditStore(path) as store:
        rows = {r["name"]: r for r in store.spans_for(trace_id)}
        assert store.verify().ok
    assert set(rows) == {"invoke_agent planner", "chat m"}
    assert rows["chat m"]["parent_id"] == rows["invoke_agent planner"]["span_id"]
    assert rows["invoke_agent planner"]["parent_id"] is None
    assert rows["chat m"]["kind"] == "client"
    attrs = json.loads(rows["chat m"]["attributes_json"])
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "m"
    assert attrs[sc.LABEL_SOURCES] == ["web:evil.example"]
    [event] = json.loads(rows["chat m"]["events_json"])
    assert event["name"] == sc.DECISION_EVENT
    assert json.loads(rows["chat m"]["resource_json"])["service.name"] == "proxy-test"
    assert rows["chat m"]["end_ns"] >= rows["chat m"]["start_ns"] > 0


def test_sqlite_exporter_needs_a_writer() -> None:
    with pytest.raises(ValueError, match="AuditWriter"):
        setup_tracing(TracingConfig(exporters=["sqlite"]))


def test_otlp_and_console_exporters_come_from_config() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    config = TracingConfig(
        exporters=["otlp-http", "otlp-grpc", "console"],
        endpoint="http://localhost:4318",
        insecure=True,
    )
    provider = setup_tracing(config)
    exporters = exporters_of(provider)
    assert isinstance(exporters["otlp-http"], HttpExporter)
    assert exporters["otlp-http"]._endpoint == "http://localhost:4318/v1/traces"
    assert isinstance(exporters["otlp-grpc"], GrpcExporter)
    assert isinstance(exporters["console"], ConsoleSpanExporter)
    provider.shutdown()  # no spans were made: nothing is sent


def test_config_rejects_unknown_exporters() -> None:
    with pytest.raises(ValueError):
        TracingConfig(exporters=["zipkin"])  # type: ignore[list-item]


def test_provider_is_not_global_unless_asked() -> None:
    from opentelemetry import trace

    provider = setup_tracing(TracingConfig(exporters=["memory"]))
    assert trace.get_tracer_provider() is not provider
    provider.shutdown()
