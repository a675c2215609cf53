//! The exact cache's journal in SQLite: what `MemoryCacheStore::restore` reloads after a
//! restart (the semantic cache has its own, `semantic.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::SqlitePool;
use time::OffsetDateTime;
use tollgate_types::ports::{CacheError, CacheJournal, CacheKey, CachedResponse, JournaledEntry};
use tollgate_types::tenancy::TenantId;
use uuid::Uuid;

use super::SqliteStore;
use super::semantic::{millis, unavailable};

/// Keys deleted per statement (two parameters each; SQLite allows 32766).
const DELETE_BATCH: usize = 250;

/// [`CacheJournal`] over the store's database.
#[derive(Clone, Debug)]
pub struct SqliteCacheJournal {
    pool: SqlitePool,
}

impl SqliteStore {
    /// The exact cache's journal, sharing this store's connections.
    pub fn cache_journal(&self) -> Arc<dyn CacheJournal> {
        Arc::new(SqliteCacheJournal { pool: self.pool.clone() })
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    digest: Vec<u8>,
    value: String,
    expires_at: i64,
}

impl Row {
    fn decode(self) -> Result<(CacheKey, CachedResponse, OffsetDateTime), String> {
        let tenant = Uuid::parse_str(&self.tenant_id).map_err(|e| format!("tenant_id: {e}"))?;
        let digest: [u8; 32] = self.digest.try_into().map_err(|_| "digest is not 32 bytes")?;
        let value: CachedResponse = serde_json::from_str(&self.value).map_err(|e| format!("value: {e}"))?;
        let expires_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.expires_at) * 1_000_000)
            .map_err(|e| format!("expires_at: {e}"))?;
        Ok((CacheKey::new(TenantId(tenant), digest), value, expires_at))
    }
}

#[async_trait]
impl CacheJournal for SqliteCacheJournal {
    async fn load(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(CacheKey, CachedResponse, OffsetDateTime)>, CacheError> {
        sqlx::query("DELETE FROM exact_cache_entries WHERE expires_at <= ?")
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT tenant_id, digest, value, expires_at FROM exact_cache_entries ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            // An unreadable row (an older layout) is skipped; the next put of its key replaces it.
            match row.decode() {
                Ok(entry) => out.push(entry),
                Err(e) => tracing::warn!(error = %e, "an unreadable exact cache journal row is skipped"),
            }
        }
        Ok(out)
    }

    async fn upsert(&self, entries: &[JournaledEntry]) -> Result<(), CacheError> {
        // One transaction for the writer's batch: one commit (and fsync) instead of one each.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        for e in entries {
            let json = serde_json::to_string(&*e.value).map_err(unavailable)?;
            sqlx::query(
                "INSERT OR REPLACE INTO exact_cache_entries (tenant_id, digest, value, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(e.key.tenant().0.to_string())
            .bind(e.key.digest().as_slice())
            .bind(json)
            .bind(millis(e.value.created_at))
            .bind(millis(e.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let pairs = vec!["(tenant_id = ? AND digest = ?)"; batch.len()].join(" OR ");
            let sql = format!("DELETE FROM exact_cache_entries WHERE {pairs}");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for key in batch {
                q = q.bind(key.tenant().0.to_string()).bind(key.digest().as_slice().to_vec());
            }
            q.execute(&self.pool).await.map_err(unavailable)?;
        }
        Ok(())
    }
}
