-- Tenancy schema for SQLite: tenants, projects, members, API keys, provider credentials and the
-- audit log. Same logical shape as migrations/postgres.
--
-- Conventions (why):
-- * Ids are UUIDv7 made in Rust and stored as 16-byte BLOBs: byte order is creation order, so
--   keyset pagination on `id` pages by creation time.
-- * Timestamps are RFC 3339 UTC text (sqlx's `time` encoding), written by Rust at microsecond
--   precision so both stores return identical values.
-- * Lists and JSON objects (scopes, allowed_models, policy, metadata, actor, before/after) are
--   JSON text.
-- * STRICT tables: SQLite then rejects a value of the wrong type instead of storing it.
-- * Every tenant-scoped table has `tenant_id` first in an index, since every query filters on it.

CREATE TABLE tenants (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    policy      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE projects (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name),
    -- Target of api_keys' composite foreign key: a key's project is in the key's tenant.
    UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE members (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
) STRICT;

-- `owner_id` is deliberately not a foreign key: deleting a member revokes its keys, and the
-- revoked keys stay (listable with include_revoked, still answering authenticate_key as
-- revoked) after the member row is gone. The store checks the owner exists in the tenant
-- when a key is created, inside the same transaction.
-- Deleting a project is refused while it has live keys; its revoked keys go with it.
CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id      BLOB NOT NULL,
    owner_id        BLOB NOT NULL,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    -- SHA-256 of the key text; globally unique because it is the authentication lookup.
    hash            BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    scopes          TEXT NOT NULL,
    allowed_models  TEXT,
    metadata        TEXT NOT NULL,
    expires_at      TEXT,
    revoked_at      TEXT,
    last_used_at    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);
CREATE INDEX api_keys_tenant_project ON api_keys (tenant_id, project_id, id);
CREATE INDEX api_keys_tenant_owner ON api_keys (tenant_id, owner_id);

CREATE TABLE provider_credentials (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    name        TEXT NOT NULL,
    masked      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
) STRICT;

CREATE INDEX provider_credentials_tenant ON provider_credentials (tenant_id, id);

-- A tenant's audit trail goes with the tenant (delete_tenant removes everything it owns).
CREATE TABLE audit_log (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    before          TEXT,
    after           TEXT,
    at              TEXT NOT NULL
) STRICT;

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
