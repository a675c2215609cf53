-- The in-process exact cache's journal (tollgate_types::ports::cache::CacheJournal): a copy of
-- every entry so a restart reloads the cache, as semantic_cache_entries (0008) does for the
-- semantic one. Rows are replaced on a re-put and deleted when the entry is evicted, expires or
-- is purged.
CREATE TABLE exact_cache_entries (
    tenant_id   TEXT NOT NULL,
    digest      BLOB NOT NULL,             -- the request's 32-byte key digest
    value       TEXT NOT NULL,             -- the answer (CachedResponse) as JSON
    created_at  INTEGER NOT NULL,          -- unix milliseconds (load order)
    expires_at  INTEGER NOT NULL,          -- unix milliseconds
    PRIMARY KEY (tenant_id, digest)
);
CREATE INDEX exact_cache_entries_expiry ON exact_cache_entries (expires_at);
