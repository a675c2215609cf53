-- Usage records: one per request, written in batches by the gateway's usage sink.
-- No foreign keys on purpose: a bill must outlive the tenant, project or key it names.
-- Retention is a periodic DELETE of old rows (`at` is indexed); PostgreSQL drops partitions.
CREATE TABLE usage_records (
    id                  BLOB PRIMARY KEY NOT NULL,
    request_id          TEXT NOT NULL,
    at                  TEXT NOT NULL,
    tenant_id           BLOB,
    project_id          BLOB,
    key_id              BLOB,
    endpoint            TEXT NOT NULL,
    model               TEXT NOT NULL,
    provider            TEXT,
    deployment          TEXT,
    status              INTEGER NOT NULL,
    error_code          TEXT,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    token_source        TEXT NOT NULL,
    cost_nanodollars    INTEGER,
    price_id            TEXT,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    cache_status        TEXT,
    user_tag            TEXT,
    metadata            TEXT NOT NULL
) STRICT;

CREATE INDEX usage_records_tenant_at_idx ON usage_records (tenant_id, at);
CREATE INDEX usage_records_at_idx ON usage_records (at);
