-- The in-process semantic cache's journal (tollgate_types::ports::semantic::SemanticJournal):
-- a copy of every entry, so a restart reloads the cache. Rows are written off the request path
-- and deleted when the entry is evicted, expires or is purged; `expires_at` lets a restart skip
-- (and delete) what expired while the gateway was down.
CREATE TABLE semantic_cache_entries (
    id          TEXT PRIMARY KEY,          -- uuid v7
    tenant_id   TEXT NOT NULL,
    namespace   BLOB NOT NULL,             -- 32-byte digest (tenant, request minus the prompt, model)
    prompt      TEXT NOT NULL,
    embedding   BLOB NOT NULL,             -- little-endian f32s
    value       TEXT NOT NULL,             -- the answer (CachedResponse) as JSON
    created_at  INTEGER NOT NULL,          -- unix milliseconds
    expires_at  INTEGER NOT NULL           -- unix milliseconds
);
CREATE INDEX semantic_cache_entries_expiry ON semantic_cache_entries (expires_at);
