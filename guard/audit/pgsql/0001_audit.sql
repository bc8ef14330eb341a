-- labelgate audit store on PostgreSQL, version 1: the tables of the SQLite store
-- (guard/audit/schema.py, migrations m001..m005), column for column, so that one hash chain,
-- one verifier and one query layer serve both backends.
--
-- Values are stored as the SQLite store holds them: times as ISO text, JSON as text (hashed
-- as written; cast to jsonb where a query looks inside), booleans as integers. Every chained
-- table carries (seq, prev_hash, hash); `ledger` repeats them in one place. All replicas
-- append to ONE chain: a writer takes the transaction-level advisory lock
-- pg_advisory_xact_lock(CHAIN_LOCK, guard/audit/pgstore.py) before it reads the head (see
-- docs/deploy.md, "The audit trail on PostgreSQL", for why one chain).

create table requests (
    id text primary key,
    trace_id text,
    session_id text,
    agent text,
    model text,
    started text,
    duration_ms double precision,
    status text,
    label_json text,
    decision text,
    error text,
    input_tokens bigint,
    output_tokens bigint,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null
);
create index requests_trace_id on requests (trace_id);
create index requests_session_id on requests (session_id);
create index requests_started on requests (started);

-- A message's text is a row of `contents` (stored once per distinct text), named by
-- content_sha256; `content` stays null (it held the text in stores older than that).
create table messages (
    id text primary key,
    request_id text,
    position bigint,
    role text,
    name text,
    kind text,
    item_id text,
    content text,
    label_json text,
    provenance_json text,
    tool_calls_json text,
    content_sha256 text,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null
);
create index messages_request_position on messages (request_id, position);
create index messages_item_id on messages (item_id);
create index messages_content_sha256 on messages (content_sha256);

create table label_events (
    id text primary key,
    request_id text,
    item_id text,
    origin text,
    detail text,
    rule text,
    ref text,
    label_json text,
    previous_label_json text,
    created text,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null
);
create index label_events_item_id on label_events (item_id);

create table decisions (
    id text primary key,
    request_id text,
    trace_id text,
    span_id text,
    sink text,
    action text,
    rule_chain_json text,
    reason text,
    label_json text,
    created text,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null
);
create index decisions_request_id on decisions (request_id);
create index decisions_trace_id on decisions (trace_id);

create table spans (
    trace_id text not null,
    span_id text not null,
    parent_id text,
    name text,
    kind text,
    start_ns bigint,
    end_ns bigint,
    status text,
    status_message text,
    scope text,
    attributes_json text,
    events_json text,
    resource_json text,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null,
    primary key (trace_id, span_id)
);
create index spans_parent_id on spans (parent_id);
create index spans_start_ns on spans (start_ns);

-- One row per prune: what was deleted, when, and the chain's hash at the cut.
create table seals (
    id text primary key,
    created text,
    before text,
    cut_seq bigint,
    cut_hash text,
    previous_cut_seq bigint,
    deleted_json text,
    by text,
    seq bigint not null unique,
    prev_hash text not null,
    hash text not null
);

create table ledger (
    seq bigint primary key,
    table_name text not null,
    row_key text not null,
    prev_hash text not null,
    hash text not null,
    created text not null
);

-- Each distinct message text once: plain (`text`, full-text indexed through `tsv`) up to
-- 256 KiB, zlib-compressed in `packed` past that, or when it holds a NUL character (which
-- PostgreSQL text cannot).
create table contents (
    sha256 text primary key,
    size bigint not null,
    text text,
    packed bytea,
    tsv tsvector generated always as (to_tsvector('english', coalesce(text, ''))) stored
);
create index contents_tsv on contents using gin (tsv);

-- The messages with their text joined back, for SQL readers (as in SQLite).
create view message_texts as
select m.id, m.request_id, m.position, m.role, m.name, m.kind, m.item_id,
       coalesce(m.content, c.text) as content, m.content_sha256,
       coalesce(c.size, octet_length(m.content)) as content_size,
       c.packed as content_packed, m.label_json, m.provenance_json, m.tool_calls_json,
       m.seq, m.prev_hash, m.hash
from messages m left join contents c on c.sha256 = m.content_sha256;
