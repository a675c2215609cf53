-- A key's own deployment-tag restriction (tollgate_types::tenancy::ApiKey::allowed_tags): only
-- deployments carrying one of these tags serve the key, on top of the tenant's policy.allowed_tags
-- (both must match, so a key can narrow its tenant's restriction, never widen it). '{}' is "no
-- restriction of its own"; existing keys get it. A text array, like allowed_models; never NULL
-- and without NULL elements, so every row decodes as a list. Row-level security already covers
-- api_keys (migration 0001) and tollgate_app's grant on it is a table grant (it covers the new
-- column), so the column is as isolated as the rows.
ALTER TABLE api_keys
    ADD COLUMN allowed_tags text[] NOT NULL DEFAULT '{}'
        CHECK (array_position(allowed_tags, NULL) IS NULL);

-- === SECURITY DEFINER functions whose results gain columns ===
-- As in 0003: a function's result type cannot change with CREATE OR REPLACE, so it is dropped
-- and created again in this migration's transaction (no caller sees it missing), with the same
-- settings, and its privileges given back (a new function is PUBLIC-executable). The store reads
-- the result by column name, so a node not yet upgraded keeps working during a rolling deploy.

-- Authentication also returns the key's allowed tags: routing needs them on every request.
DROP FUNCTION tollgate_authenticate_key(bytea);
CREATE FUNCTION tollgate_authenticate_key(p_hash bytea)
RETURNS TABLE (
    key_id uuid, tenant_id uuid, project_id uuid, owner_id uuid, role text, scopes text[],
    allowed_models text[], allowed_tags text[], expires_at timestamptz, revoked_at timestamptz,
    tenant_policy jsonb, key_limits jsonb, project_limits jsonb, tenant_limits jsonb,
    tenant_pricing jsonb
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    -- A key whose owner was deleted is revoked (delete_member does both at once): it is still
    -- returned, as revoked, with the least role. The project always exists (composite foreign
    -- key with ON DELETE CASCADE).
    SELECT k.id, k.tenant_id, k.project_id, k.owner_id, coalesce(m.role, 'viewer'), k.scopes,
           k.allowed_models, k.allowed_tags, k.expires_at, k.revoked_at, t.policy,
           k.limits, p.limits, t.limits, t.pricing
    FROM public.api_keys k
    LEFT JOIN public.members m ON m.id = k.owner_id AND m.tenant_id = k.tenant_id
    JOIN public.projects p ON p.id = k.project_id AND p.tenant_id = k.tenant_id
    JOIN public.tenants t ON t.id = k.tenant_id
    WHERE k.hash = p_hash
$$;

-- === privileges (as in 0001) ===
REVOKE ALL ON FUNCTION tollgate_authenticate_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tollgate_authenticate_key(bytea) TO tollgate_app;
