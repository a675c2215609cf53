-- Response-cache rules (tollgate_types::cache_rule::CacheRule) set on a project or a key: the
-- default mode, the ceiling on what requests may do, the TTL. '{}' sets nothing (every field
-- inherits the level above), which existing rows get. A tenant's rule lives inside its policy
-- (jsonb already), so tenants need no column. Row-level security already covers projects and
-- api_keys (migration 0001) and tollgate_app's grants on them are table grants (they cover new
-- columns), so the columns are as isolated as the rows.
ALTER TABLE projects
    ADD COLUMN cache jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(cache) = 'object');
ALTER TABLE api_keys
    ADD COLUMN cache jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(cache) = 'object');

-- On a cache hit, what the stored answer cost when it was made: the spend the cache saved
-- (tollgate_types::ports::usage::UsageRecord::cost_saved_nanodollars). NULL for everything but
-- hits, and for the rows written before this migration. As in 0005: ALTER TABLE on the
-- partitioned parent adds the column to every partition (the monthly ones and DEFAULT), later
-- partitions get it from the parent (tollgate_ensure_usage_partitions creates them as
-- PARTITION OF, or LIKE the parent), and a nullable column without a default rewrites nothing.
-- usage_records' row-level security filters rows, not columns, and tollgate_app's SELECT on it
-- is a table grant.
ALTER TABLE usage_records ADD COLUMN cost_saved_nanodollars bigint;

-- === SECURITY DEFINER functions ===

-- The sink's batch insert, now with cost_saved_nanodollars. Same signature and result as 0005's,
-- so CREATE OR REPLACE keeps its privileges (EXECUTE for tollgate_app only). A record without
-- the new key (a node not yet upgraded, during a rolling deploy) stores NULL.
CREATE OR REPLACE FUNCTION tollgate_insert_usage(p_records jsonb)
RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO public.usage_records (
        id, request_id, at, tenant_id, project_id, key_id, endpoint, model, provider, deployment,
        status, error_code, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
        token_source, cost_nanodollars, price_id, latency_ms, ttft_ms, cache_status, user_tag,
        metadata, served_model, attempts, hedged, cost_saved_nanodollars)
    SELECT r.id, r.request_id, r.at, r.tenant_id, r.project_id, r.key_id, r.endpoint, r.model,
           r.provider, r.deployment, r.status, r.error_code, r.input_tokens, r.output_tokens,
           r.cached_input_tokens, r.reasoning_tokens, r.token_source, r.cost_nanodollars,
           r.price_id, r.latency_ms, r.ttft_ms, r.cache_status, r.user_tag,
           coalesce(r.metadata, '{}'::jsonb), r.served_model, coalesce(r.attempts, 0),
           coalesce(r.hedged, false), r.cost_saved_nanodollars
    FROM jsonb_to_recordset(p_records) AS r (
        id uuid, request_id text, at timestamptz, tenant_id uuid, project_id uuid, key_id uuid,
        endpoint text, model text, provider text, deployment text, status integer,
        error_code text, input_tokens bigint, output_tokens bigint, cached_input_tokens bigint,
        reasoning_tokens bigint, token_source text, cost_nanodollars bigint, price_id text,
        latency_ms bigint, ttft_ms bigint, cache_status text, user_tag text, metadata jsonb,
        served_model text, attempts integer, hedged boolean, cost_saved_nanodollars bigint)
$$;

-- Authentication also returns the cache rules of the key and its project: the cache stage
-- resolves them on every request, and the hot path reads nothing else from the database.
-- As in 0003 and 0006: a function's result type cannot change with CREATE OR REPLACE, so it is
-- dropped and created again in this migration's transaction (no caller sees it missing), with
-- the same settings, and its privileges given back (a new function is PUBLIC-executable). The
-- store reads the result by column name, so a node not yet upgraded keeps working during a
-- rolling deploy.
DROP FUNCTION tollgate_authenticate_key(bytea);
CREATE FUNCTION tollgate_authenticate_key(p_hash bytea)
RETURNS TABLE (
    key_id uuid, tenant_id uuid, project_id uuid, owner_id uuid, role text, scopes text[],
    allowed_models text[], allowed_tags text[], expires_at timestamptz, revoked_at timestamptz,
    tenant_policy jsonb, key_limits jsonb, project_limits jsonb, tenant_limits jsonb,
    tenant_pricing jsonb, key_cache jsonb, project_cache jsonb
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    -- A key whose owner was deleted is revoked (delete_member does both at once): it is still
    -- returned, as revoked, with the least role. The project always exists (composite foreign
    -- key with ON DELETE CASCADE).
    SELECT k.id, k.tenant_id, k.project_id, k.owner_id, coalesce(m.role, 'viewer'), k.scopes,
           k.allowed_models, k.allowed_tags, k.expires_at, k.revoked_at, t.policy,
           k.limits, p.limits, t.limits, t.pricing, k.cache, p.cache
    FROM public.api_keys k
    LEFT JOIN public.members m ON m.id = k.owner_id AND m.tenant_id = k.tenant_id
    JOIN public.projects p ON p.id = k.project_id AND p.tenant_id = k.tenant_id
    JOIN public.tenants t ON t.id = k.tenant_id
    WHERE k.hash = p_hash
$$;

-- === privileges (as in 0001) ===
REVOKE ALL ON FUNCTION tollgate_authenticate_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tollgate_authenticate_key(bytea) TO tollgate_app;
