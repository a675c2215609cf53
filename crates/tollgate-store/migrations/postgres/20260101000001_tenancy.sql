-- Tollgate tenancy schema for PostgreSQL, with row-level security.
--
-- Run by the OWNER role (`tollgate migrate` with the owner's URL). The owner owns every table and
-- function below. The gateway connects as `tollgate_app`, a login role that owns nothing, is not
-- a superuser and cannot bypass RLS: every row it sees or writes is filtered by the policies on
-- the per-transaction setting `tollgate.tenant_id` (set with set_config(..., true) as the first
-- statement of each tenant-scoped transaction). Lookups that must happen before the tenant is
-- known, or across tenants, go through the few SECURITY DEFINER functions at the end.

-- === the application role ===
-- Created here if missing so a fresh database works with one command. Parallel migrations (one
-- database per test) may race on the cluster-wide role: the loser gets duplicate_object or
-- unique_violation, which means the role exists, which is what we want.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tollgate_app') THEN
        BEGIN
            CREATE ROLE tollgate_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- Fail closed: an existing role that could bypass the policies defeats the whole design.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
               WHERE rolname = 'tollgate_app' AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'role tollgate_app must be NOSUPERUSER NOBYPASSRLS';
    END IF;
END
$$;

-- === tables ===

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    policy      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE projects (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT projects_tenant_name_key UNIQUE (tenant_id, name),
    -- Target of the keys' composite foreign key: a key's project must be in the key's tenant.
    CONSTRAINT projects_tenant_id_key UNIQUE (tenant_id, id)
);

CREATE TABLE members (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT members_tenant_name_key UNIQUE (tenant_id, name),
    CONSTRAINT members_tenant_id_key UNIQUE (tenant_id, id)
);

CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id      uuid NOT NULL,
    owner_id        uuid NOT NULL,
    name            text NOT NULL,
    prefix          text NOT NULL,
    -- SHA-256 of the key: the authentication lookup, unique across all tenants.
    hash            bytea NOT NULL CHECK (octet_length(hash) = 32),
    scopes          text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['inference', 'admin']),
    allowed_models  text[],
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT api_keys_hash_key UNIQUE (hash),
    -- Composite key: even a forged project id of another tenant cannot be referenced (foreign-key
    -- checks bypass RLS, so the key itself must carry the tenant). Deleting a project is refused
    -- while it has live keys; its revoked keys go with it.
    CONSTRAINT api_keys_project_fkey FOREIGN KEY (tenant_id, project_id)
        REFERENCES projects (tenant_id, id) ON DELETE CASCADE
    -- owner_id has no foreign key on purpose: deleting a member revokes its keys and keeps them
    -- (listed as revoked, for the record). The store checks the owner exists in the tenant,
    -- under a row lock, whenever it creates a key.
);
CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id, id);
CREATE INDEX api_keys_tenant_project_idx ON api_keys (tenant_id, project_id);
CREATE INDEX api_keys_tenant_owner_idx ON api_keys (tenant_id, owner_id);

CREATE TABLE provider_credentials (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider    text NOT NULL,
    name        text NOT NULL,
    masked      text NOT NULL,
    key_id      text NOT NULL,
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT provider_credentials_tenant_name_key UNIQUE (tenant_id, name)
);
CREATE INDEX provider_credentials_tenant_id_idx ON provider_credentials (tenant_id, id);

CREATE TABLE audit_log (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor           jsonb NOT NULL,
    action          text NOT NULL,
    resource_type   text NOT NULL,
    resource_id     text NOT NULL,
    before          jsonb,
    after           jsonb,
    at              timestamptz NOT NULL
);
CREATE INDEX audit_log_tenant_id_idx ON audit_log (tenant_id, id);

-- === row-level security ===

-- The tenant of the current transaction, or NULL when the setting is missing, empty or not a
-- uuid. NULL compares unequal to everything, so "no tenant" matches no row and never raises an
-- error (a cast error on a malformed value would be noise at best, an oracle at worst).
CREATE FUNCTION tollgate_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN current_setting('tollgate.tenant_id', true)
             ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
        THEN current_setting('tollgate.tenant_id', true)::uuid
    END
$$;

-- For every tenant-scoped table (and `tenants` itself, keyed on its id): RLS enabled and forced
-- (FORCE: the owner is filtered too, so an operator's ad-hoc query without a tenant sees
-- nothing), one policy per command keyed on the tenant setting, and one policy for the owner role
-- that applies only while the owner's identity was borrowed by a SECURITY DEFINER function
-- (current_user is the owner, session_user is the caller). It is granted TO the owner only, so
-- it does nothing for tollgate_app; a superuser owner bypasses RLS anyway, and this keeps a
-- non-superuser owner's functions working.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('tenants', 'id'),
        ('projects', 'tenant_id'),
        ('members', 'tenant_id'),
        ('api_keys', 'tenant_id'),
        ('provider_credentials', 'tenant_id'),
        ('audit_log', 'tenant_id')
    ) AS v (tbl, col)
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT USING (%I = tollgate_current_tenant())',
                       t.tbl || '_tenant_select', t.tbl, t.col);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT WITH CHECK (%I = tollgate_current_tenant())',
                       t.tbl || '_tenant_insert', t.tbl, t.col);
        EXECUTE format('CREATE POLICY %I ON %I FOR UPDATE USING (%I = tollgate_current_tenant()) '
                       'WITH CHECK (%I = tollgate_current_tenant())',
                       t.tbl || '_tenant_update', t.tbl, t.col, t.col);
        EXECUTE format('CREATE POLICY %I ON %I FOR DELETE USING (%I = tollgate_current_tenant())',
                       t.tbl || '_tenant_delete', t.tbl, t.col);
        EXECUTE format('CREATE POLICY %I ON %I FOR ALL TO CURRENT_USER '
                       'USING (session_user <> current_user) WITH CHECK (session_user <> current_user)',
                       t.tbl || '_owner_definer', t.tbl);
    END LOOP;
END
$$;

-- === SECURITY DEFINER functions: the only ways across tenants ===
-- Each pins search_path (pg_temp last, so a caller's temporary tables cannot shadow ours),
-- schema-qualifies its tables, and returns only what its caller needs.

-- Authentication: the key with this hash and what the gateway needs to admit a request, whether
-- or not it is expired or revoked (the caller decides). Never returns the hash or metadata.
CREATE FUNCTION tollgate_authenticate_key(p_hash bytea)
RETURNS TABLE (
    key_id uuid, tenant_id uuid, project_id uuid, owner_id uuid, role text, scopes text[],
    allowed_models text[], expires_at timestamptz, revoked_at timestamptz, tenant_policy jsonb
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    -- A key whose owner was deleted is revoked (delete_member does both at once): it is still
    -- returned, as revoked, with the least role.
    SELECT k.id, k.tenant_id, k.project_id, k.owner_id, coalesce(m.role, 'viewer'), k.scopes,
           k.allowed_models, k.expires_at, k.revoked_at, t.policy
    FROM public.api_keys k
    LEFT JOIN public.members m ON m.id = k.owner_id AND m.tenant_id = k.tenant_id
    JOIN public.tenants t ON t.id = k.tenant_id
    WHERE k.hash = p_hash
$$;

-- Batched last-used timestamps; unknown ids are ignored, and a timestamp never moves backwards.
CREATE FUNCTION tollgate_touch_keys(p_ids uuid[], p_used timestamptz[])
RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    UPDATE public.api_keys k
    SET last_used_at = GREATEST(k.last_used_at, u.used)
    FROM (SELECT id, max(used) AS used FROM unnest(p_ids, p_used) AS x (id, used) GROUP BY id) u
    WHERE k.id = u.id
$$;

-- Super-admin: create a tenant (the audit record is then written by the caller, in the same
-- transaction, under the new tenant's setting).
CREATE FUNCTION tollgate_create_tenant(p_id uuid, p_name text, p_policy jsonb)
RETURNS TABLE (id uuid, name text, policy jsonb, created_at timestamptz, updated_at timestamptz)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO public.tenants (id, name, policy, created_at, updated_at)
    VALUES (p_id, p_name, p_policy, now(), now())
    RETURNING id, name, policy, created_at, updated_at
$$;

-- Super-admin: one page of tenants in id (creation) order.
CREATE FUNCTION tollgate_list_tenants(p_after uuid, p_limit integer)
RETURNS TABLE (id uuid, name text, policy jsonb, created_at timestamptz, updated_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT t.id, t.name, t.policy, t.created_at, t.updated_at
    FROM public.tenants t
    WHERE p_after IS NULL OR t.id > p_after
    ORDER BY t.id
    LIMIT least(greatest(p_limit, 0), 501)
$$;

-- Super-admin: delete a tenant and (by cascade) everything it owns. True if it existed.
CREATE FUNCTION tollgate_delete_tenant(p_id uuid)
RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH d AS (DELETE FROM public.tenants WHERE id = p_id RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM d)
$$;

-- Master-key rotation: every sealed credential, across tenants.
CREATE FUNCTION tollgate_all_sealed_credentials()
RETURNS TABLE (tenant_id uuid, id uuid, provider text, key_id text, ciphertext bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT c.tenant_id, c.id, c.provider, c.key_id, c.ciphertext
    FROM public.provider_credentials c
    ORDER BY c.tenant_id, c.id
$$;

-- === privileges ===
-- Functions are executable by PUBLIC by default: take that back from the definer functions and
-- give them to the application role only.
REVOKE ALL ON FUNCTION tollgate_authenticate_key(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_touch_keys(uuid[], timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_create_tenant(uuid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_list_tenants(uuid, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_delete_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tollgate_all_sealed_credentials() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    tollgate_current_tenant(),
    tollgate_authenticate_key(bytea),
    tollgate_touch_keys(uuid[], timestamptz[]),
    tollgate_create_tenant(uuid, text, jsonb),
    tollgate_list_tenants(uuid, integer),
    tollgate_delete_tenant(uuid),
    tollgate_all_sealed_credentials()
TO tollgate_app;

-- Only the DML the gateway issues. Tenants are created, listed and deleted through the functions
-- above; the audit log is append-only for the application.
GRANT SELECT, UPDATE ON tenants TO tollgate_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, members, api_keys, provider_credentials TO tollgate_app;
GRANT SELECT, INSERT ON audit_log TO tollgate_app;
