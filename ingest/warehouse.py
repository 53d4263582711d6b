"""DDL for the raw schema: the only tables Python writes. dbt reads them as sources.

Uniqueness (pattern_id, event_id, text_hash) is enforced by the loader's anti-joins and
checked by dbt tests rather than by primary keys: ART indexes over 10M keys cost memory and
DuckDB checks them eagerly inside a transaction, which fights the per-file upserts.
"""

from __future__ import annotations

import duckdb

from engram.config import EMBEDDING_DIM

RAW_DDL = f"""
create schema if not exists raw;

create table if not exists raw.patterns (
    pattern_id        varchar not null,
    description       varchar not null,
    description_hash  varchar not null,   -- sha256 of the description: key into raw.embeddings
    pattern_type      varchar,
    first_seen        timestamp,          -- UTC
    metadata          json,
    source_file       varchar not null,
    source_line       bigint not null,
    run_id            varchar not null,
    loaded_at         timestamp not null  -- UTC
);

create table if not exists raw.usage_events (
    event_id          varchar not null,
    pattern_id        varchar not null,
    session_id        varchar not null,
    occurred_at       timestamp not null, -- the event's timestamp, converted to UTC
    outcome_quality   double not null,
    files_involved    varchar[] not null,
    tools_used        varchar[] not null,
    context           varchar,
    context_hash      varchar,            -- sha256 of context: key into raw.embeddings
    project_id        varchar not null,
    source_file       varchar not null,
    source_line       bigint not null,
    run_id            varchar not null,
    loaded_at         timestamp not null
);

create table if not exists raw.embeddings (
    text_hash         varchar not null,   -- sha256 hex of the UTF-8 text
    text              varchar not null,
    embedding         float[{EMBEDDING_DIM}] not null,  -- unit length
    model             varchar not null,
    embedded_at       timestamp not null
);

create table if not exists raw.rejected_records (
    run_id            varchar not null,
    source_file       varchar not null,
    line_number       bigint not null,    -- 1-based line where the record starts
    record_kind       varchar,            -- pattern, event, or null when it could not be told
    field             varchar,            -- the offending field, null for whole-record problems
    reason            varchar not null,
    raw_text          varchar not null,   -- the record as read (truncated past 64 KiB)
    raw_hash          varchar not null,
    rejected_at       timestamp not null
);

create table if not exists raw.ingested_files (
    run_id            varchar not null,
    source_file       varchar not null,
    content_sha256    varchar not null,
    size_bytes        bigint not null,
    records_read      bigint not null,
    records_loaded    bigint not null,
    records_skipped   bigint not null,
    records_rejected  bigint not null,
    ingested_at       timestamp not null
);

create table if not exists raw.ingest_runs (
    run_id            varchar not null,
    started_at        timestamp not null,
    finished_at       timestamp,
    status            varchar not null,   -- running, succeeded, failed
    files_seen        bigint,
    records_read      bigint,
    records_loaded    bigint,
    records_skipped   bigint,
    records_rejected  bigint,
    texts_embedded    bigint,
    texts_cached      bigint,
    error             varchar,
    engram_version    varchar
);
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw tables if they do not exist (idempotent)."""
    con.execute(RAW_DDL)
