-- A key's own deployment-tag restriction (tollgate_types::tenancy::ApiKey::allowed_tags): only
-- deployments carrying one of these tags serve the key, on top of the tenant's
-- policy.allowed_tags (both must match: a key narrows its tenant's restriction, never widens
-- it). JSON text as the other lists; '[]' is "no restriction of its own", which existing keys get.
ALTER TABLE api_keys ADD COLUMN allowed_tags TEXT NOT NULL DEFAULT '[]';
