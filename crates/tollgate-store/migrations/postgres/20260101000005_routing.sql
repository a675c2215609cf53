-- Routing facts of each usage record (tollgate_types::ports::usage::UsageRecord):
-- served_model is the alias that served the request when a fallback did (NULL when the
-- requested alias answered, or nothing did); attempts the upstream attempts made (0: refused
-- before any); hedged is reserved for request hedging (always false for now).
--
-- ALTER TABLE on the partitioned parent adds the columns to every partition (the monthly ones
-- and DEFAULT), and partitions created later get them from the parent. The defaults are
-- constants, so no partition is rewritten: existing rows read as NULL / 0 / false. No CHECK
-- constraint on purpose: adding one would scan every partition under an exclusive lock.
-- Nothing else changes for the app role: its SELECT on usage_records is a table grant (it
-- covers new columns) and the row-level security policies filter rows, not columns.
ALTER TABLE usage_records
    ADD COLUMN served_model text,
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN hedged       boolean NOT NULL DEFAULT false;

-- The sink's batch insert, now with the new columns. Same signature and result as 0002's, so
-- CREATE OR REPLACE keeps its privileges (EXECUTE for tollgate_app only). Columns are named
-- (0002's relied on their order); a record without the new keys (a node not yet upgraded,
-- during a rolling deploy) gets the defaults.
CREATE OR REPLACE FUNCTION tollgate_insert_usage(p_records jsonb)
RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO public.usage_records (
        id, request_id, at, tenant_id, project_id, key_id, endpoint, model, provider, deployment,
        status, error_code, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
        token_source, cost_nanodollars, price_id, latency_ms, ttft_ms, cache_status, user_tag,
        metadata, served_model, attempts, hedged)
    SELECT r.id, r.request_id, r.at, r.tenant_id, r.project_id, r.key_id, r.endpoint, r.model,
           r.provider, r.deployment, r.status, r.error_code, r.input_tokens, r.output_tokens,
           r.cached_input_tokens, r.reasoning_tokens, r.token_source, r.cost_nanodollars,
           r.price_id, r.latency_ms, r.ttft_ms, r.cache_status, r.user_tag,
           coalesce(r.metadata, '{}'::jsonb), r.served_model, coalesce(r.attempts, 0),
           coalesce(r.hedged, false)
    FROM jsonb_to_recordset(p_records) AS r (
        id uuid, request_id text, at timestamptz, tenant_id uuid, project_id uuid, key_id uuid,
        endpoint text, model text, provider text, deployment text, status integer,
        error_code text, input_tokens bigint, output_tokens bigint, cached_input_tokens bigint,
        reasoning_tokens bigint, token_source text, cost_nanodollars bigint, price_id text,
        latency_ms bigint, ttft_ms bigint, cache_status text, user_tag text, metadata jsonb,
        served_model text, attempts integer, hedged boolean)
$$;
