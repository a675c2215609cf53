-- Usage records: one per request, written in batches by the gateway's usage sink.
--
-- Partitioned by month on `at`, so retention drops whole partitions instead of running large
-- DELETEs. Partitions for the months around the migration are created here; the application
-- calls tollgate_ensure_usage_partitions() at start-up to keep the next months ready, and a
-- DEFAULT partition catches anything outside them so an insert never fails for lack of one.
-- No foreign keys on purpose: a bill must outlive the tenant, project or key it names.
-- Row-level security as on every tenant-scoped table; the sink's batches hold many tenants'
-- records, so they go in through a SECURITY DEFINER function.
CREATE TABLE usage_records (
    id                  uuid NOT NULL,
    request_id          text NOT NULL,
    at                  timestamptz NOT NULL,
    tenant_id           uuid,
    project_id          uuid,
    key_id              uuid,
    endpoint            text NOT NULL,
    model               text NOT NULL,
    provider            text,
    deployment          text,
    status              integer NOT NULL,
    error_code          text,
    input_tokens        bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    token_source        text NOT NULL,
    cost_nanodollars    bigint,
    price_id            text,
    latency_ms          bigint NOT NULL,
    ttft_ms             bigint,
    cache_status        text,
    user_tag            text,
    metadata            jsonb NOT NULL,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);

CREATE INDEX usage_records_tenant_at_idx ON usage_records (tenant_id, at);

CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT;

-- Creates the monthly partitions from `from_month` for `months` months, if missing.
CREATE FUNCTION tollgate_ensure_usage_partitions(from_month date, months integer)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    m date := date_trunc('month', from_month)::date;
BEGIN
    FOR i IN 0 .. greatest(months, 0) - 1 LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.usage_records FOR VALUES FROM (%L) TO (%L)',
            'usage_records_' || to_char(m, 'YYYY_MM'), m, (m + interval '1 month')::date);
        m := (m + interval '1 month')::date;
    END LOOP;
END
$$;

SELECT tollgate_ensure_usage_partitions((now() - interval '1 month')::date, 14);

ALTER TABLE usage_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_records FORCE ROW LEVEL SECURITY;
CREATE POLICY usage_records_tenant_select ON usage_records FOR SELECT USING (tenant_id = tollgate_current_tenant());
CREATE POLICY usage_records_owner_definer ON usage_records FOR ALL TO CURRENT_USER
    USING (session_user <> current_user) WITH CHECK (session_user <> current_user);

-- The sink's batch insert: many tenants' records at once (a JSON array of records).
CREATE FUNCTION tollgate_insert_usage(p_records jsonb)
RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO public.usage_records
    SELECT r.id, r.request_id, r.at, r.tenant_id, r.project_id, r.key_id, r.endpoint, r.model,
           r.provider, r.deployment, r.status, r.error_code, r.input_tokens, r.output_tokens,
           r.cached_input_tokens, r.reasoning_tokens, r.token_source, r.cost_nanodollars,
           r.price_id, r.latency_ms, r.ttft_ms, r.cache_status, r.user_tag,
           coalesce(r.metadata, '{}'::jsonb)
    FROM jsonb_to_recordset(p_records) AS r (
        id uuid, request_id text, at timestamptz, tenant_id uuid, project_id uuid, key_id uuid,
        endpoint text, model text, provider text, deployment text, status integer,
        error_code text, input_tokens bigint, output_tokens bigint, cached_input_tokens bigint,
        reasoning_tokens bigint, token_source text, cost_nanodollars bigint, price_id text,
        latency_ms bigint, ttft_ms bigint, cache_status text, user_tag text, metadata jsonb)
$$;

REVOKE ALL ON FUNCTION tollgate_insert_usage(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_ensure_usage_partitions(date, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tollgate_insert_usage(jsonb), tollgate_ensure_usage_partitions(date, integer)
    TO tollgate_app;
-- Tenants read their own usage (under their setting); writes go through the function only.
GRANT SELECT ON usage_records TO tollgate_app;
