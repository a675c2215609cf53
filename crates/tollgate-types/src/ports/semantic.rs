//! The semantic-cache port: answers found by the meaning of the last user message rather than
//! its exact text.
//!
//! A lookup names a *namespace* and an embedding. The namespace is a [`CacheKey`]: the tenant,
//! and a digest of everything in the request but the last user message's text (alias, sampling
//! fields, tools, system prompt, earlier turns) together with the embedding model's identity,
//! built by `tollgate_core::cache::semantic_key`. Two requests can only ever match inside one
//! namespace, so a hit needs the same tenant, alias, parameters and conversation, and vectors of
//! different models never meet.
//!
//! Embeddings are L2-normalised, so cosine similarity is their dot product.
//!
//! Implementations: the in-process index (`tollgate_core::cache::MemorySemanticStore`, single
//! node, optionally persisted to SQLite) and PostgreSQL with pgvector (shared by every node);
//! both pass one contract suite (`tollgate_core::semantic_contract!`). As for the exact cache, an
//! outage is a miss: every error is [`CacheError::Unavailable`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::cache::{CacheError, CacheKey, CacheStats, CachedResponse, PurgeFilter};

/// Stores complete answers by namespace and prompt embedding.
#[async_trait]
pub trait SemanticStore: Send + Sync {
    /// The live entry of `namespace` most similar to `embedding`, if its similarity is at least
    /// `min_similarity`. An expired entry is never returned; an embedding of another length than
    /// the namespace's entries never matches.
    async fn nearest(
        &self,
        namespace: &CacheKey,
        embedding: &[f32],
        min_similarity: f32,
    ) -> Result<Option<SemanticHit>, CacheError>;

    /// Adds `entry` to `namespace` for `ttl` (entries are not replaced: two prompts of one
    /// meaning may both be kept). A zero `ttl` stores nothing. A bounded backend may evict other
    /// entries to stay within its bound.
    async fn put(&self, namespace: &CacheKey, entry: SemanticEntry, ttl: Duration) -> Result<(), CacheError>;

    /// Adds several entries, as [`Self::put`] would one by one (the cache's writer stores in
    /// batches). An error means any of them may not have been stored.
    async fn put_many(&self, puts: Vec<SemanticPut>) -> Result<(), CacheError> {
        let mut result = Ok(());
        for p in puts {
            if let Err(e) = self.put(&p.namespace, p.entry, p.ttl).await {
                result = Err(e);
            }
        }
        result
    }

    /// Removes every entry matching `filter` (always within one tenant) and returns how many.
    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError>;

    /// Approximate size figures.
    async fn stats(&self) -> Result<CacheStats, CacheError>;

    /// Frees the space of expired entries (they are never returned either way) and returns how
    /// many were removed. The gateway calls it periodically.
    async fn purge_expired(&self) -> Result<u64, CacheError> {
        Ok(0)
    }
}

/// Where the in-process semantic cache keeps a copy of its entries so that a restart keeps the
/// cache (the SQLite store). Written off the request path, by the cache's writer.
#[async_trait]
pub trait SemanticJournal: Send + Sync {
    /// Every entry not expired at `now`, oldest first.
    async fn load(&self, now: OffsetDateTime) -> Result<Vec<JournalRecord>, CacheError>;
    /// Records new entries (in one transaction where the journal has them).
    async fn insert(&self, records: &[JournalRecord]) -> Result<(), CacheError>;
    /// Forgets entries (evicted, expired or purged); unknown ids are ignored.
    async fn remove(&self, ids: &[Uuid]) -> Result<(), CacheError>;
}

/// One entry to add ([`SemanticStore::put_many`]).
#[derive(Debug, Clone)]
pub struct SemanticPut {
    pub namespace: CacheKey,
    pub entry: SemanticEntry,
    pub ttl: Duration,
}

/// One journaled semantic entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub id: Uuid,
    pub namespace: CacheKey,
    pub entry: SemanticEntry,
    pub expires_at: OffsetDateTime,
}

/// What is stored for one answered prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticEntry {
    /// The embedded text (the last user message), kept so a hit can be checked against the
    /// stored prompt's own threshold and shown to the tenant.
    pub prompt: String,
    /// Its L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// The answer.
    pub value: Arc<CachedResponse>,
}

/// A semantic match.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticHit {
    /// The stored prompt that matched.
    pub prompt: String,
    /// Its answer.
    pub value: Arc<CachedResponse>,
    /// Cosine similarity between the stored prompt's embedding and the query.
    pub similarity: f32,
}

/// The longest TTL a semantic backend keeps an entry for, whatever it is put with.
pub const MAX_SEMANTIC_TTL: Duration = Duration::from_secs(365 * 86_400);
