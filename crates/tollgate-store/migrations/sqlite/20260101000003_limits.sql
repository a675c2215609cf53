-- Limits (rate limits, per-model limits, budgets) stored with the tenant, project and key they
-- apply to, and a tenant's negotiated pricing. JSON text as the other JSON columns; '{}' is "no
-- limits" / "the gateway's prices". Shapes: tollgate_types::limits::{LimitPolicy, PricingPolicy}.
ALTER TABLE tenants ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN pricing TEXT NOT NULL DEFAULT '{}';
ALTER TABLE projects ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
