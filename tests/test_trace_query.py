"""The trace query layer over a real store: filters, search, resolving ids, the span tree with
labels, evidence and decisions, and the eval views."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from proxy_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import *  # noqa: F403 - fixtures
from trace_fixtures import AuditData

from labelgate.guard.audit.query import AuditReader, parse_when
from labelgate.guard.audit.views import NotFound, TraceFilter


@pytest.fixture
def reader(audit_db: AuditData) -> Iterator[AuditReader]:
    with AuditReader.open(audit_db.path) as opened:
        yield opened


def trace_of(reader: AuditReader, request_id: str) -> str:
    return reader.resolve(request_id)[0]


def listed(reader: AuditReader, **filters: object) -> set[str]:
    return {t.trace_id for t in reader.list_traces(TraceFilter.model_validate(filters))}


def test_list_shows_every_request_and_the_eval_run(
    reader: AuditReader, audit_db: AuditData
) -> None:
    found = reader.list_traces()
    assert len(found) == 5  # four proxy requests, one eval run
    starts = [t.started for t in found]
    assert starts == sorted(starts, reverse=True)  # newest first
    (run,) = [t for t in found if t.eval_run_id]
    assert run.eval_run_id == audit_db.run_id and run.root == "eval.run" and run.spans > 10
    denied = next(t for t in found if t.trace_id == trace_of(reader, audit_db.denied_request))
    assert denied.agents == ["mailer"] and denied.models == ["fake-mailer"]
    assert denied.decision == "deny" and denied.status == "denied"
    assert denied.labels and "untrusted" in denied.labels[0]


def test_filters(reader: AuditReader, audit_db: AuditData) -> None:
    ids = {
        k: trace_of(reader, getattr(audit_db, k))
        for k in ("reader_request", "denied_request", "allowed_request", "script_request")
    }
    run = reader.resolve(audit_db.run_id)[0]
    assert listed(reader, agent="mailer") == {ids["denied_request"], ids["allowed_request"]}
    assert listed(reader, decision="deny") == {ids["denied_request"]}
    assert listed(reader, decision="allow") == {ids["allowed_request"]}
    assert listed(reader, model="scripted") == {run}
    # the relayed text is re-identified as untrusted: three traces carry the web tool's label
    assert listed(reader, label="tool:fetch_url") == {
        ids["reader_request"],
        ids["denied_request"],
        ids["script_request"],
    }
    assert ids["allowed_request"] not in listed(reader, label="untrusted")
    assert listed(reader, label="no-such-source") == set()
    session = reader.request(audit_db.allowed_request).session_id
    assert session and listed(reader, session=session) == {ids["allowed_request"]}
    assert listed(reader, agent="mailer", decision="allow") == {ids["allowed_request"]}


def test_time_filters(reader: AuditReader) -> None:
    everything = listed(reader)
    assert listed(reader, since=datetime.now(UTC) - timedelta(hours=1)) == everything
    assert listed(reader, since=datetime.now(UTC) + timedelta(minutes=1)) == set()
    assert listed(reader, until=datetime.now(UTC) - timedelta(days=1)) == set()
    newest = reader.list_traces(TraceFilter(limit=1))[0]
    assert newest.started is not None
    assert listed(reader, since=newest.started) == {newest.trace_id}


def test_full_text_search(reader: AuditReader, audit_db: AuditData) -> None:
    stemmed = listed(reader, search="beach")  # porter stemming: "beaches"
    assert trace_of(reader, audit_db.reader_request) in stemmed
    assert trace_of(reader, audit_db.denied_request) in stemmed  # the relayed summary
    assert listed(reader, search="colleague Lisbon") == {trace_of(reader, audit_db.allowed_request)}
    assert listed(reader, search="manager") == {reader.resolve(audit_db.run_id)[0]}  # transcript
    assert listed(reader, search='"unbalanced') == set()  # no FTS syntax error
    assert listed(reader, search="derived from untrusted") == {
        trace_of(reader, audit_db.denied_request)  # a decision's reason
    }


def test_paging(reader: AuditReader) -> None:
    first = reader.list_traces(TraceFilter(limit=2))
    second = reader.list_traces(TraceFilter(limit=2, offset=2))
    assert len(first) == len(second) == 2
    assert not {t.trace_id for t in first} & {t.trace_id for t in second}


def test_resolve_every_kind_of_id(reader: AuditReader, audit_db: AuditData) -> None:
    trace_id, focus = reader.resolve(audit_db.denied_request)
    assert len(trace_id) == 32 and focus is None
    assert reader.resolve(trace_id) == (trace_id, None)
    assert reader.resolve(trace_id[:10]) == (trace_id, None)
    run_trace, _ = reader.resolve(audit_db.run_id)
    sample_trace, span = reader.resolve(audit_db.sample_id)
    assert sample_trace == run_trace and span is not None
    assert reader.resolve(f"{audit_db.run_id}/{audit_db.sample_id}") == (run_trace, span)
    with pytest.raises(NotFound):
        reader.resolve("no-such-thing")


def test_denied_trace_has_the_rule_reason_and_the_evidence(
    reader: AuditReader, audit_db: AuditData
) -> None:
    view = reader.trace(audit_db.denied_request)
    (span,) = view.spans
    assert span.name == "chat fake-mailer" and span.operation == "model call"
    assert span.duration_ms > 0 and span.label and "untrusted" in span.label
    (decision,) = span.decisions
    assert decision.action == "deny" and decision.sink == "tool:send_email"
    assert decision.rule == "baseline:untrusted-side-effect"
    assert "untrusted" in decision.reason
    assert [s.decisive for s in decision.chain].count(True) == 1
    request = span.request
    assert request is not None and request.id == audit_db.denied_request
    user, answer = request.messages
    assert user.label is not None and user.label.integrity == "untrusted"
    assert "fingerprint" in {e.origin for e in user.evidence}  # why: text seen before
    (call,) = answer.tool_calls
    assert call["name"] == "send_email" and call["action"] == "deny"
    assert call["arguments"]["to"] == "travel-deals@evil.example"


def test_label_events_are_evidence_too(reader: AuditReader, audit_db: AuditData) -> None:
    request = reader.request(audit_db.reader_request)
    first = request.messages[0]
    (event,) = [e for e in first.evidence if e.origin == "declassify"]
    assert event.rule == "release-travel-summaries"
    assert event.previous_label is not None and event.previous_label.confidentiality == "internal"
    assert all(e.origin != "declassify" for m in request.messages[1:] for e in m.evidence)


def test_eval_run_trace_is_a_tree(reader: AuditReader, audit_db: AuditData) -> None:
    view = reader.trace(audit_db.run_id)
    (root,) = view.roots
    assert root.name == "eval.run"
    names = {s.name for s in view.spans}
    assert {"eval.scenario", "eval.sample", "eval.agent_turn", "chat scripted"} <= names
    for span in view.spans:
        for child in span.children:
            assert child.parent_id == span.span_id and child.start_ns >= span.start_ns
    focused = reader.trace(audit_db.sample_id)
    (sample_span,) = [s for s in focused.spans if s.span_id == focused.focus]
    assert sample_span.attributes["labelgate.eval.sample_id"] == audit_db.sample_id


def test_eval_views(reader: AuditReader, audit_db: AuditData) -> None:
    (run,) = reader.eval_runs()
    assert run.run_id == audit_db.run_id and run.family == "dilemmas"
    assert run.done == run.n_samples and run.failed == 0
    assert run.trace_id == reader.resolve(audit_db.run_id)[0]
    scorers = {score.scorer: score for score in run.scores}
    assert set(scorers) == {"choice", "guard"}  # guard: NA for every sample of an unguarded run
    choice = scorers["choice"]
    assert choice.n == run.n_samples and choice.scored < choice.n
    assert scorers["guard"].scored == 0
    full = reader.eval_run(run.run_id)
    assert len(full.samples) == run.n_samples
    sample = reader.eval_sample(run.run_id, audit_db.sample_id)
    assert sample.messages[0].role == "user" and sample.messages[-1].role == "assistant"
    assert sample.scores and sample.trace_id == run.trace_id
    with pytest.raises(NotFound):
        reader.eval_run("nope")


def test_parse_when() -> None:
    now = datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("2025-01-30", now) == datetime(2025, 1, 30, tzinfo=UTC)
    assert parse_when("2025-01-30T10:00:00+02:00", now).hour == 10
    with pytest.raises(ValueError):
        parse_when("yesterday-ish", now)
