"""The trace query layer: list, filter, search and open traces in the audit store.

Shared by ``labelgate trace`` and the web UI (one query layer, two views). It only reads:
open the store with ``AuditReader.open(target)``, a SQLite file (``mode=ro``) or a PostgreSQL
URL (a read-only connection); the SQL that differs between them comes from
``guard.audit.sqlsource``. A *trace* is an
OpenTelemetry trace id of the ``spans`` table, or of a ``requests`` row; a request recorded
without any trace id is listed under its own request id.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from labelgate.guard.audit.contents import VIEW, message_content
from labelgate.guard.audit.evalquery import EvalQueries
from labelgate.guard.audit.sqlsource import Dialect, Params, SqlSource
from labelgate.guard.audit.views import (
    DecisionView,
    Evidence,
    LabelView,
    MessageView,
    NotFound,
    RequestView,
    RuleStep,
    SpanView,
    TraceFilter,
    TraceSummary,
    TraceView,
    loads,
    strictest,
)

Row = dict[str, Any]


def _traces(d: Dialect) -> str:
    """Every trace key with its first start and last end: spans by trace id; requests by
    trace id, else their id."""
    started = d.epoch_ns("started")
    return f"""
with keys as (
  select trace_id as tkey, min(start_ns) as start_ns, max(end_ns) as end_ns from spans
  group by trace_id
  union all
  select coalesce(trace_id, id),
         cast({started} as bigint),
         cast({started} + duration_ms * 1e6 as bigint)
  from requests
)
select tkey, min(start_ns) as start_ns, max(end_ns) as end_ns from keys group by tkey
"""


_REQ_KEY = "coalesce(r.trace_id, r.id)"


def _attr(d: Dialect, name: str, alias: str = "s") -> str:
    return d.json_field(f"{alias}.attributes_json", name)


def _label_match(d: Dialect, column: str) -> str:
    """SQL true when the label JSON in ``column`` carries the term ``:label``."""
    fields = [f"{d.json_field(column, k)} = :label" for k in ("confidentiality", "integrity")]
    lists = [d.json_has(column, k, "label") for k in ("sources", "categories", "readers")]
    return "(" + " or ".join(fields + lists) + ")"


def _span_attr_any(d: Dialect, names: Sequence[str], param: str) -> str:
    match = " or ".join(f"{_attr(d, n)} = :{param}" for n in names)
    return f"exists (select 1 from spans s where s.trace_id = t.tkey and ({match}))"


def _request_any(condition: str) -> str:
    return f"exists (select 1 from requests r where {_REQ_KEY} = t.tkey and {condition})"


def _filters(d: Dialect) -> dict[str, str]:
    sources = d.json_has("s.attributes_json", "labelgate.label.sources", "label")
    return {
        "agent": _request_any("r.agent = :agent")
        + " or "
        + _span_attr_any(d, ["gen_ai.agent.name", "gen_ai.agent.id"], "agent"),
        "session": _request_any("r.session_id = :session")
        + " or "
        + _span_attr_any(d, ["gen_ai.conversation.id", "labelgate.session.id"], "session"),
        "model": _request_any("r.model = :model")
        + " or "
        + _span_attr_any(
            d, ["gen_ai.request.model", "gen_ai.response.model", "labelgate.eval.model"], "model"
        ),
        "decision": _request_any("r.decision = :decision")
        + " or exists (select 1 from decisions d where d.trace_id = t.tkey"
        + " and d.action = :decision)"
        + " or "
        + _span_attr_any(d, ["labelgate.decision.action"], "decision"),
        "label": _request_any(_label_match(d, "r.label_json"))
        + " or exists (select 1 from messages m join requests r on m.request_id = r.id"
        + f" where {_REQ_KEY} = t.tkey and {_label_match(d, 'm.label_json')})"
        + " or "
        + _span_attr_any(
            d, ["labelgate.label.confidentiality", "labelgate.label.integrity"], "label"
        )
        + f" or exists (select 1 from spans s where s.trace_id = t.tkey and {sources})",
    }


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """``2h``, ``30m``, ``7d``, ``45s`` ago, or an ISO date/time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        return now - timedelta(**{unit[match.group(2)]: float(match.group(1))})
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(when: datetime) -> int:
    # Integer arithmetic: a float timestamp is off by ~200 ns, enough to lose the boundary.
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class AuditReader(EvalQueries):
    """Read-only queries over one audit store, SQLite or PostgreSQL (audit tables plus, in a
    SQLite file, the ``eval_*`` tables)."""

    def __init__(self, source: SqlSource) -> None:
        self.source = source
        self.dialect = source.dialect
        self._tables = source.names()

    @classmethod
    def open(cls, target: str | Path) -> AuditReader:
        """A SQLite file (opened read-only) or a PostgreSQL URL."""
        from labelgate.guard.audit.backend import open_store

        with open_store(target, readonly=True) as store:
            return cls(store.reader_source())

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, table: str) -> bool:
        return table in self._tables

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self.source.rows(sql, params)

    # ------------------------------------------------------------------ list
    def list_traces(self, flt: TraceFilter | None = None) -> list[TraceSummary]:
        """Traces newest first, filtered; see ``TraceFilter``."""
        flt = flt or TraceFilter()
        where, params = self._where(flt)
        sql = (
            f"select * from ({_traces(self.dialect)}) t {where} "
            "order by start_ns desc limit :limit offset :offset"
        )
        found = self.rows(sql, {**params, "limit": flt.limit, "offset": flt.offset})
        return self._summaries(found)

    def _where(self, flt: TraceFilter) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for name, sql in _filters(self.dialect).items():
            value = getattr(flt, name)
            if value:
                clauses.append(f"({sql})")
                params[name] = value
        if flt.since is not None:
            clauses.append("t.start_ns >= :since")
            params["since"] = _ns(flt.since)
        if flt.until is not None:
            clauses.append("t.start_ns <= :until")
            params["until"] = _ns(flt.until)
        if flt.search:
            keys = self.search_trace_keys(flt.search)
            params.update({f"k{i}": k for i, k in enumerate(keys)})
            marks = ", ".join(f":k{i}" for i in range(len(keys))) or "null"
            clauses.append(f"t.tkey in ({marks})")
        return ("where " + " and ".join(clauses)) if clauses else "", params

    def search_trace_keys(self, text: str, limit: int = 500) -> list[str]:
        """Traces whose messages (full text, stemmed), decision reasons or eval transcripts
        mention ``text``; words are matched literally (no FTS syntax)."""
        keys: dict[str, None] = {}
        fts = self.dialect.fts_keys()
        if fts is not None and text.strip():
            found = self.rows(fts, {"q": self.dialect.fts_query(text), "limit": limit})
            keys.update(dict.fromkeys(r["k"] for r in found))
        like = f"%{text}%"
        like_ = self.dialect.like
        reasons = f"select trace_id as k from decisions where reason {like_} ? or sink {like_} ?"
        keys.update(dict.fromkeys(r["k"] for r in self.rows(reasons, [like, like]) if r["k"]))
        if self.has("eval_messages") and self.has("eval_samples"):
            sql = (
                "select distinct s.trace_id as k from eval_messages m join eval_samples s "
                "on s.run_id = m.run_id and s.sample_id = m.sample_id where m.content like ?"
            )
            keys.update(dict.fromkeys(r["k"] for r in self.rows(sql, [like]) if r["k"]))
        return list(keys)[:limit]

    def _summaries(self, found: list[Row]) -> list[TraceSummary]:
        if not found:
            return []
        keys = [r["tkey"] for r in found]
        marks = ", ".join("?" for _ in keys)
        spans = self.rows(
            f"select trace_id, span_id, parent_id, name, status, attributes_json from spans "
            f"where trace_id in ({marks}) order by start_ns",
            keys,
        )
        reqs = self.rows(
            f"select *, coalesce(trace_id, id) as tkey from requests "
            f"where coalesce(trace_id, id) in ({marks}) order by started",
            keys,
        )
        by_span: dict[str, list[Row]] = defaultdict(list)
        by_req: dict[str, list[Row]] = defaultdict(list)
        for s in spans:
            by_span[s["trace_id"]].append(s)
        for r in reqs:
            by_req[r["tkey"]].append(r)
        return [_summary(row, by_span[row["tkey"]], by_req[row["tkey"]]) for row in found]

    # ------------------------------------------------------------------ resolve
    def resolve(self, ident: str) -> tuple[str, str | None]:
        """(trace id, span id to focus on) for a trace id (or unique prefix), a request id,
        an eval run id, or an eval sample (``RUN/SAMPLE`` or a sample id unique in the store).
        """
        ident = ident.strip()
        if self.rows("select 1 from spans where trace_id = ? limit 1", [ident]):
            return ident, None
        req = self.rows("select id, trace_id from requests where id = ?", [ident])
        if req:
            return req[0]["trace_id"] or req[0]["id"], None
        found = self.resolve_eval(ident)
        if found is not None:
            return found
        if re.fullmatch(r"[0-9a-f]{6,32}", ident):
            hits = self.rows(
                "select distinct trace_id from spans where trace_id like ? limit 2", [ident + "%"]
            )
            if len(hits) == 1:
                return hits[0]["trace_id"], None
            if len(hits) > 1:
                raise NotFound(f"{ident!r} is the prefix of several traces")
        raise NotFound(f"no trace, request, eval run or sample {ident!r}")

    def resolve_eval(self, ident: str) -> tuple[str, str | None] | None:
        run_attr = _attr(self.dialect, "labelgate.eval.run_id")
        sample_attr = _attr(self.dialect, "labelgate.eval.sample_id")
        run_span = self.rows(
            f"select trace_id from spans s where s.name = 'eval.run' and {run_attr} = ?", [ident]
        )
        if run_span:
            return run_span[0]["trace_id"], None
        base = "select trace_id, span_id from spans s where s.name = 'eval.sample' and "
        # Sample ids may hold "/" themselves: try the whole text as one first, then RUN/SAMPLE.
        hits = self.rows(base + f"{sample_attr} = ? order by start_ns desc", [ident])
        if len(hits) > 1:
            raise NotFound(f"sample {ident!r} is in several runs: say RUN/{ident}")
        if not hits and "/" in ident:
            run, _, sample = ident.partition("/")
            hits = self.rows(base + f"{sample_attr} = ? and {run_attr} = ?", [sample, run])
        return (hits[0]["trace_id"], hits[0]["span_id"]) if hits else None

    # ------------------------------------------------------------------ open one trace
    def trace(self, ident: str) -> TraceView:
        """The span tree of a trace, with its requests (messages, labels, evidence, decisions)."""
        trace_id, focus = self.resolve(ident)
        spans = [
            _span(r)
            for r in self.rows(
                "select * from spans where trace_id = ? order by start_ns, seq", [trace_id]
            )
        ]
        requests = {r.id: r for r in self.requests_of(trace_id)}
        decisions = self.decisions_of(trace_id, list(requests))
        start = min((s.start_ns for s in spans), default=None)
        end = max((s.end_ns for s in spans), default=None)
        roots = _tree(spans, start or 0)
        attached: set[str] = set()
        for span in (s for root in roots for s in root.walk()):
            rid = span.attributes.get("labelgate.request.id")
            if isinstance(rid, str) and rid in requests:
                span.request = requests[rid]
                attached.add(rid)
            span.decisions = [d for d in decisions if d.span_id == span.span_id]
        return TraceView(
            trace_id=trace_id,
            roots=roots,
            requests=[r for rid, r in requests.items() if rid not in attached],
            focus=focus,
            start_ns=start,
            end_ns=end,
        )

    def requests_of(self, trace_key: str) -> list[RequestView]:
        rows = self.rows(
            "select * from requests where coalesce(trace_id, id) = ? order by started", [trace_key]
        )
        return [self.request_view(row) for row in rows]

    def request(self, request_id: str) -> RequestView:
        rows = self.rows("select * from requests where id = ?", [request_id])
        if not rows:
            raise NotFound(f"no request {request_id!r}")
        return self.request_view(rows[0])

    def request_view(self, row: Row) -> RequestView:
        table = VIEW if self.has(VIEW) else "messages"  # a store not yet migrated
        messages = self.rows(
            f"select * from {table} where request_id = ? order by position", [row["id"]]
        )
        events = self._label_events(row["id"], [m["item_id"] for m in messages if m["item_id"]])
        decisions = [
            _decision(d)
            for d in self.rows(
                "select * from decisions where request_id = ? order by seq", [row["id"]]
            )
        ]
        fields = {k: row.get(k) for k in RequestView.model_fields if k in row}
        return RequestView(
            **{**fields, "label": LabelView.parse(row.get("label_json"))},
            messages=[_message(m, events.get(m["item_id"] or "", [])) for m in messages],
            decisions=decisions,
        )

    def _label_events(self, request_id: str, item_ids: Sequence[str]) -> dict[str, list[Evidence]]:
        """Label events of these items (from any request: a label may have been given earlier)."""
        marks = ", ".join("?" for _ in item_ids) or "null"
        rows = self.rows(
            f"select * from label_events where item_id in ({marks}) or "
            "(request_id = ? and item_id is null) order by seq",
            [*item_ids, request_id],
        )
        found: dict[str, list[Evidence]] = defaultdict(list)
        for e in rows:
            found[e["item_id"] or ""].append(
                Evidence(
                    origin=e["origin"],
                    detail=e["detail"] or "",
                    rule=e["rule"],
                    ref=e["ref"],
                    label=LabelView.parse(e["label_json"]),
                    previous_label=LabelView.parse(e["previous_label_json"]),
                )
            )
        return found

    def decisions_of(self, trace_id: str, request_ids: Sequence[str] = ()) -> list[DecisionView]:
        marks = ", ".join("?" for _ in request_ids) or "null"
        rows = self.rows(
            f"select * from decisions where trace_id = ? or request_id in ({marks}) order by seq",
            [trace_id, *request_ids],
        )
        return [_decision(d) for d in rows]

    def distinct(self, column: str) -> list[str]:
        """Values offered by the filter form: agents, models, decisions of the requests."""
        if column not in ("agent", "model", "decision", "session_id", "status"):
            raise ValueError(column)
        sql = f"select distinct {column} as v from requests where {column} is not null order by v"
        return [r["v"] for r in self.rows(sql)]


# --------------------------------------------------------------------------- row -> view


def _summary(row: Row, spans: list[Row], reqs: list[Row]) -> TraceSummary:
    attrs = [loads(s["attributes_json"], {}) for s in spans]
    ids = {s["span_id"] for s in spans}
    root = next((s["name"] for s in spans if s["parent_id"] not in ids), "")
    if not root and reqs:
        root = f"request {reqs[0]['model'] or ''}".strip()
    models = _uniq([r["model"] for r in reqs] + _values(attrs, "gen_ai.request.model"))
    agents = _uniq([r["agent"] for r in reqs] + _values(attrs, "gen_ai.agent.name"))
    labels = _uniq(
        [lv.short for r in reqs if (lv := LabelView.parse(r["label_json"])) is not None]
        or _values(attrs, "labelgate.label")
    )
    statuses = [r["status"] for r in reqs] + [s["status"] for s in spans if s["status"] == "error"]
    status = "error" if "error" in statuses else "denied" if "denied" in statuses else "ok"
    start, end = row["start_ns"], row["end_ns"]
    return TraceSummary(
        trace_id=row["tkey"],
        started=_EPOCH + timedelta(microseconds=start // 1000) if start is not None else None,
        duration_ms=(end - start) / 1e6 if start is not None and end is not None else None,
        root=root,
        spans=len(spans),
        requests=len(reqs),
        agents=agents,
        models=models,
        sessions=_uniq([r["session_id"] for r in reqs]),
        decision=strictest(
            [r["decision"] for r in reqs] + _values(attrs, "labelgate.decision.action")
        ),
        status=status,
        labels=labels,
        eval_run_id=next(iter(_values(attrs, "labelgate.eval.run_id")), None),
    )


def _values(attrs: Iterable[dict[str, Any]], name: str) -> list[str]:
    return [str(a[name]) for a in attrs if isinstance(a, dict) and a.get(name) is not None]


def _uniq(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _span(row: Row) -> SpanView:
    return SpanView(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        kind=row["kind"] or "internal",
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        status=row["status"] or "unset",
        status_message=row["status_message"],
        scope=row["scope"],
        attributes=loads(row["attributes_json"], {}),
        events=loads(row["events_json"], []),
        resource=loads(row["resource_json"], {}),
    )


def _tree(spans: list[SpanView], start_ns: int) -> list[SpanView]:
    """Children under their parents, in start order; a span whose parent is not stored (a
    client's remote parent) is a root."""
    by_id = {s.span_id: s for s in spans}
    roots: list[SpanView] = []
    for span in spans:
        span.offset_ms = (span.start_ns - start_ns) / 1e6
        parent = by_id.get(span.parent_id or "")
        (parent.children if parent is not None else roots).append(span)
    return roots


def _message(row: Row, events: list[Evidence]) -> MessageView:
    provenance = loads(row["provenance_json"], []) or []
    evidence = [Evidence.model_validate(p) for p in provenance if isinstance(p, dict)]
    return MessageView(
        id=row["id"],
        position=row["position"],
        role=row["role"],
        name=row["name"],
        kind=row["kind"],
        item_id=row["item_id"],
        content=message_content(row),
        label=LabelView.parse(row["label_json"]),
        evidence=evidence + events,
        tool_calls=loads(row["tool_calls_json"], []) or [],
    )


def _decision(row: Row) -> DecisionView:
    chain = loads(row["rule_chain_json"], []) or []
    return DecisionView(
        id=row["id"],
        request_id=row["request_id"],
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        sink=row["sink"],
        action=row["action"],
        reason=row["reason"] or "",
        chain=[RuleStep.model_validate(s) for s in chain if isinstance(s, dict)],
        label=LabelView.parse(row["label_json"]),
        created=row["created"],
    )
