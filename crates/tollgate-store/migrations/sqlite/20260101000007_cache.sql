-- Response-cache rules (tollgate_types::cache_rule::CacheRule) set on a project or a key: the
-- default mode, the ceiling on what requests may do, the TTL. JSON text as the other JSON
-- columns; '{}' sets nothing (every field inherits the level above), which existing rows get.
-- A tenant's rule lives inside its policy JSON, so tenants need no column.
ALTER TABLE projects ADD COLUMN cache TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN cache TEXT NOT NULL DEFAULT '{}';

-- On a cache hit, what the stored answer cost when it was made: the spend the cache saved
-- (tollgate_types::ports::usage::UsageRecord::cost_saved_nanodollars). NULL for everything
-- but hits, and for the rows written before this migration. cache_status (0002) says hit /
-- miss / bypass.
ALTER TABLE usage_records ADD COLUMN cost_saved_nanodollars INTEGER;
