"""``labelgate trace list|show|export|verify`` on a real store; the OTLP/JSON export is checked
against the OTLP protobuf schema."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from proxy_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import AuditData

from labelgate.guard.audit.query import AuditReader
from labelgate.guard.audit.trace_cli import trace


def run(*args: str, db: Path) -> Result:
    return CliRunner().invoke(trace, [*args, "--db", str(db)], terminal_width=200)


def test_list_table_and_json(audit_db: AuditData) -> None:
    table = run("list", db=audit_db.path)
    assert table.exit_code == 0, table.output
    assert "5 trace(s)" in table.output and "eval.run" in table.output
    assert "mailer" in table.output and "deny" in table.output
    lines = run("list", "--json", "--decision", "deny", db=audit_db.path).output.splitlines()
    (only,) = [json.loads(line) for line in lines]
    assert only["agents"] == ["mailer"] and only["decision"] == "deny"
    searched = run("list", "--json", "-s", "Lisbon", "--agent", "mailer", db=audit_db.path)
    assert len(searched.output.splitlines()) == 1
    none = run("list", "--json", "--since", "1m", "--label", "secret", db=audit_db.path)
    assert none.exit_code == 0 and none.output == ""
    bad = run("list", "--since", "last tuesday", db=audit_db.path)
    assert bad.exit_code == 2 and "say 2h" in bad.output


def test_show_a_denied_request(audit_db: AuditData) -> None:
    result = run("show", audit_db.denied_request, db=audit_db.path)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "chat fake-mailer" in out and "[model call]" in out and " ms at +" in out
    assert "decision deny at tool:send_email" in out
    assert "rule baseline:untrusted-side-effect" in out
    assert "reason: deny: send_email.to is derived from untrusted source" in out
    assert "why: fingerprint" in out  # the evidence of the relayed text's label
    assert "label public/untrusted" in out
    assert "send_email(" in out and "-> deny" in out


def test_show_an_eval_sample_and_the_run(audit_db: AuditData) -> None:
    sample = run("show", audit_db.sample_id, db=audit_db.path)
    assert sample.exit_code == 0, sample.output
    assert "(showing span" in sample.output and "eval.sample" in sample.output
    assert "chat scripted" in sample.output and "eval.run  [" not in sample.output
    whole = run("show", audit_db.run_id, db=audit_db.path)
    assert "eval.run  [" in whole.output and whole.output.count("eval.sample  [") > 1


def test_show_unknown_is_one_line(audit_db: AuditData) -> None:
    result = run("show", "nothing-like-this", db=audit_db.path)
    assert result.exit_code == 1
    assert (
        result.output.strip() == "Error: no trace, request, eval run or sample 'nothing-like-this'"
    )
    missing = CliRunner().invoke(trace, ["list", "--db", "/nonexistent/x.db"])
    assert missing.exit_code == 2 and "no audit database" in missing.output


def test_stored_text_is_never_rich_markup(audit_db: AuditData, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(audit_db.path, db)
    conn = sqlite3.connect(db)
    conn.execute(
        "update messages set content = '[bold red]fake[/] \x1b[31mred' where request_id = ?",
        [audit_db.denied_request],
    )  # breaks the hash chain: irrelevant for show
    conn.commit()
    conn.close()
    out = run("show", audit_db.denied_request, "--full", db=db).output
    assert "[bold red]fake[/]" in out  # shown literally, not interpreted
    assert "\x1b[31m" not in out and "\\x1b[31mred" in out  # escape codes made visible


def _to_proto_json(data: dict) -> dict:
    """OTLP/JSON ids are hex; the generic protobuf JSON mapping wants base64 bytes."""

    def b64(hex_id: str) -> str:
        return base64.b64encode(bytes.fromhex(hex_id)).decode()

    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = b64(span[key])
    return data


def test_export_otlp_json_is_valid_otlp(audit_db: AuditData, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    result = run(
        "export", audit_db.run_id, "--format", "otlp-json", "-o", str(out), db=audit_db.path
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    spans = [s for rs in data["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    with AuditReader.open(audit_db.path) as reader:
        stored = reader.trace(audit_db.run_id).spans
    assert len(spans) == len(stored)
    for span in spans:
        assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
        assert len(span["spanId"]) == 16
        assert isinstance(span["startTimeUnixNano"], str) and span["startTimeUnixNano"].isdigit()
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
        assert isinstance(span["kind"], int)
    chat = next(s for s in spans if s["name"] == "chat scripted")
    attrs = {a["key"]: a["value"] for a in chat["attributes"]}
    assert attrs["gen_ai.operation.name"] == {"stringValue": "chat"}
    assert attrs["gen_ai.request.max_tokens"] == {"intValue": "1024"}  # the default output cap
    assert "doubleValue" in attrs["gen_ai.request.temperature"]
    assert attrs["gen_ai.response.finish_reasons"] == {
        "arrayValue": {"values": [{"stringValue": "stop"}]}
    }
    assert attrs["labelgate.eval.cache_hit"] == {"boolValue": False}
    assert chat["kind"] == 3  # SPAN_KIND_CLIENT
    message = ParseDict(_to_proto_json(data), ExportTraceServiceRequest())  # strict: no unknowns
    proto_spans = [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(proto_spans) == len(spans)
    assert {s.trace_id.hex() for s in proto_spans} == {stored[0].trace_id}
    assert any(s.parent_span_id for s in proto_spans)


def test_export_json_lines(audit_db: AuditData) -> None:
    result = run("export", audit_db.denied_request, "--format", "jsonl", db=audit_db.path)
    rows = [json.loads(line) for line in result.output.splitlines()]
    kinds = [r["type"] for r in rows]
    assert kinds == ["span", "request", "message", "message", "decision"]
    decision = rows[-1]
    assert decision["rule"] == "baseline:untrusted-side-effect" and decision["chain"]
    span = rows[0]
    assert span["attributes"]["gen_ai.request.model"] == "fake-mailer"
    assert span["duration_ms"] == (span["end_ns"] - span["start_ns"]) / 1e6


def test_verify_intact_then_tampered(audit_db: AuditData, tmp_path: Path) -> None:
    ok = run("verify", db=audit_db.path)
    assert ok.exit_code == 0 and ok.output.startswith("OK:")
    db = tmp_path / "tampered.db"
    shutil.copy(audit_db.path, db)
    conn = sqlite3.connect(db)
    conn.execute("update decisions set action = 'allow' where action = 'deny'")
    conn.commit()
    conn.close()
    bad = run("verify", db=db)
    assert bad.exit_code == 1 and "TAMPERED" in bad.output and "decisions" in bad.output
