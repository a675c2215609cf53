//! The semantic cache's journal in SQLite: what `MemorySemanticStore::restore` reloads after a
//! restart. Entries are tenant data, but the journal is read only by the gateway at start-up,
//! whole, and written by the cache's writer; no API reads it per tenant.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::SqlitePool;
use time::OffsetDateTime;
use tollgate_types::ports::semantic::{JournalRecord, SemanticEntry, SemanticJournal};
use tollgate_types::ports::{CacheError, CacheKey, CachedResponse};
use tollgate_types::tenancy::TenantId;
use uuid::Uuid;

use super::SqliteStore;

/// Rows deleted per statement (SQLite's bound-parameter limit is 32766; stay far below).
const DELETE_BATCH: usize = 500;

/// [`SemanticJournal`] over the store's database.
#[derive(Clone, Debug)]
pub struct SqliteSemanticJournal {
    pool: SqlitePool,
}

impl SqliteStore {
    /// The semantic cache's journal, sharing this store's connections.
    pub fn semantic_journal(&self) -> Arc<dyn SemanticJournal> {
        Arc::new(SqliteSemanticJournal { pool: self.pool.clone() })
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(format!("cache journal: {e}"))
}

pub(super) fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    tenant_id: String,
    namespace: Vec<u8>,
    prompt: String,
    embedding: Vec<u8>,
    value: String,
    expires_at: i64,
}

impl Row {
    fn into_record(self) -> Result<JournalRecord, String> {
        let id = Uuid::parse_str(&self.id).map_err(|e| format!("id: {e}"))?;
        let tenant = Uuid::parse_str(&self.tenant_id).map_err(|e| format!("tenant_id: {e}"))?;
        let digest: [u8; 32] = self.namespace.try_into().map_err(|_| "namespace is not 32 bytes")?;
        if !self.embedding.len().is_multiple_of(4) {
            return Err("embedding is not a whole number of f32s".into());
        }
        let embedding =
            self.embedding.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let value: CachedResponse = serde_json::from_str(&self.value).map_err(|e| format!("value: {e}"))?;
        let expires_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.expires_at) * 1_000_000)
            .map_err(|e| format!("expires_at: {e}"))?;
        Ok(JournalRecord {
            id,
            namespace: CacheKey::new(TenantId(tenant), digest),
            entry: SemanticEntry { prompt: self.prompt, embedding, value: Arc::new(value) },
            expires_at,
        })
    }
}

#[async_trait]
impl SemanticJournal for SqliteSemanticJournal {
    async fn load(&self, now: OffsetDateTime) -> Result<Vec<JournalRecord>, CacheError> {
        sqlx::query("DELETE FROM semantic_cache_entries WHERE expires_at <= ?")
            .bind(millis(now))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, tenant_id, namespace, prompt, embedding, value, expires_at \
             FROM semantic_cache_entries ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut records = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in rows {
            let id = row.id.clone();
            match row.into_record() {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(id, error = %e, "an unreadable semantic cache journal row is dropped");
                    broken.push(id);
                }
            }
        }
        for id in broken {
            sqlx::query("DELETE FROM semantic_cache_entries WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
        }
        Ok(records)
    }

    async fn insert(&self, records: &[JournalRecord]) -> Result<(), CacheError> {
        // One transaction for the writer's batch: one commit (and fsync) instead of one each.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        for r in records {
            let embedding: Vec<u8> = r.entry.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
            let value = serde_json::to_string(&*r.entry.value).map_err(unavailable)?;
            sqlx::query(
                "INSERT OR REPLACE INTO semantic_cache_entries \
                 (id, tenant_id, namespace, prompt, embedding, value, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.id.to_string())
            .bind(r.namespace.tenant().0.to_string())
            .bind(r.namespace.digest().as_slice())
            .bind(&r.entry.prompt)
            .bind(embedding)
            .bind(value)
            .bind(millis(r.entry.value.created_at))
            .bind(millis(r.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn remove(&self, ids: &[Uuid]) -> Result<(), CacheError> {
        for batch in ids.chunks(DELETE_BATCH) {
            let marks = vec!["?"; batch.len()].join(",");
            let sql = format!("DELETE FROM semantic_cache_entries WHERE id IN ({marks})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in batch {
                q = q.bind(id.to_string());
            }
            q.execute(&self.pool).await.map_err(unavailable)?;
        }
        Ok(())
    }
}
