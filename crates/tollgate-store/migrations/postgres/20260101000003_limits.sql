-- Limits (rate limits, per-model limits, budgets) stored with the tenant, project and key they
-- apply to, and a tenant's negotiated pricing. '{}' is "no limits" / "the gateway's prices".
-- Shapes: tollgate_types::limits::{LimitPolicy, PricingPolicy}. Row-level security already
-- covers these tables (migration 0001), so the new columns are as isolated as the rows.

ALTER TABLE tenants
    ADD COLUMN limits  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(limits) = 'object'),
    ADD COLUMN pricing jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(pricing) = 'object');
ALTER TABLE projects
    ADD COLUMN limits  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(limits) = 'object');
ALTER TABLE api_keys
    ADD COLUMN limits  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(limits) = 'object');

-- === SECURITY DEFINER functions whose results gain columns ===
-- A function's result type cannot change with CREATE OR REPLACE: each is dropped and created
-- again (in this migration's transaction, so no caller ever sees it missing), with the same
-- settings as in 0001, and its privileges given back (a new function is PUBLIC-executable).

-- Authentication also returns the limits of the key, its project and its tenant, and the
-- tenant's pricing: everything admission needs, in the one pre-tenant lookup.
DROP FUNCTION tollgate_authenticate_key(bytea);
CREATE FUNCTION tollgate_authenticate_key(p_hash bytea)
RETURNS TABLE (
    key_id uuid, tenant_id uuid, project_id uuid, owner_id uuid, role text, scopes text[],
    allowed_models text[], expires_at timestamptz, revoked_at timestamptz, tenant_policy jsonb,
    key_limits jsonb, project_limits jsonb, tenant_limits jsonb, tenant_pricing jsonb
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    -- A key whose owner was deleted is revoked (delete_member does both at once): it is still
    -- returned, as revoked, with the least role. The project always exists (composite foreign
    -- key with ON DELETE CASCADE).
    SELECT k.id, k.tenant_id, k.project_id, k.owner_id, coalesce(m.role, 'viewer'), k.scopes,
           k.allowed_models, k.expires_at, k.revoked_at, t.policy,
           k.limits, p.limits, t.limits, t.pricing
    FROM public.api_keys k
    LEFT JOIN public.members m ON m.id = k.owner_id AND m.tenant_id = k.tenant_id
    JOIN public.projects p ON p.id = k.project_id AND p.tenant_id = k.tenant_id
    JOIN public.tenants t ON t.id = k.tenant_id
    WHERE k.hash = p_hash
$$;

-- Tenant rows as the store reads them now carry limits and pricing.
DROP FUNCTION tollgate_create_tenant(uuid, text, jsonb);
CREATE FUNCTION tollgate_create_tenant(p_id uuid, p_name text, p_policy jsonb)
RETURNS TABLE (
    id uuid, name text, policy jsonb, limits jsonb, pricing jsonb, created_at timestamptz,
    updated_at timestamptz
)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO public.tenants (id, name, policy, created_at, updated_at)
    VALUES (p_id, p_name, p_policy, now(), now())
    RETURNING id, name, policy, limits, pricing, created_at, updated_at
$$;

DROP FUNCTION tollgate_list_tenants(uuid, integer);
CREATE FUNCTION tollgate_list_tenants(p_after uuid, p_limit integer)
RETURNS TABLE (
    id uuid, name text, policy jsonb, limits jsonb, pricing jsonb, created_at timestamptz,
    updated_at timestamptz
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT t.id, t.name, t.policy, t.limits, t.pricing, t.created_at, t.updated_at
    FROM public.tenants t
    WHERE p_after IS NULL OR t.id > p_after
    ORDER BY t.id
    LIMIT least(greatest(p_limit, 0), 501)
$$;

-- === privileges (as in 0001) ===
REVOKE ALL ON FUNCTION tollgate_authenticate_key(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_create_tenant(uuid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_list_tenants(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    tollgate_authenticate_key(bytea),
    tollgate_create_tenant(uuid, text, jsonb),
    tollgate_list_tenants(uuid, integer)
TO tollgate_app;
