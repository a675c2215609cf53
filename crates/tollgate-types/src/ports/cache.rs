//! The response-cache port: the exact cache the pipeline's `cache` stage reads before routing and
//! writes when a request settles.
//!
//! One [`CacheStore`] trait with an in-process implementation
//! (`tollgate_core::cache::MemoryCacheStore`, single node) and, in `tollgate_redis::cache`, a Redis one
//! shared by every node; both pass one contract suite (`tollgate_core::cache_contract!`).
//!
//! Tenancy is built into the key: a [`CacheKey`] cannot be made without a [`TenantId`]. The
//! tenant is hashed into the key's digest by `tollgate_core::cache::exact_key` *and* kept beside
//! it, so a backend indexes entries by `(tenant, digest)` and purges a tenant's entries without
//! trusting the hash alone.
//!
//! A cache outage is a miss, never a failed request: every error is
//! [`CacheError::Unavailable`], which the pipeline logs and counts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::tenancy::TenantId;
use crate::{ChatResponse, Usage};

/// Stores complete answers by exact request key.
///
/// Every method is cancel-safe in the sense that dropping its future leaves the store
/// consistent: a `put` either happened or did not; a `purge` may have removed part of its
/// entries (run it again).
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// The live entry under `key`, if any. Runs in the `cache` stage, before routing, on every
    /// request whose mode allows reading. An expired entry is never returned. An error means
    /// the backend could not answer; the pipeline treats it as a miss.
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<CachedResponse>>, CacheError>;

    /// Stores `value` under `key` for `ttl`, replacing any entry there (and its TTL). Runs when a
    /// request settles with a complete, successful answer and its mode allows writing. A zero
    /// `ttl` stores nothing. A backend bounded by size may evict other entries (or decline to
    /// keep this one) to stay within its bound. An error means nothing may have been stored;
    /// the pipeline logs it and the request is unaffected.
    async fn put(&self, key: &CacheKey, value: Arc<CachedResponse>, ttl: Duration) -> Result<(), CacheError>;

    /// Stores several answers, as [`Self::put`] would one by one, in order (a later put of
    /// the same key wins). The cache's writer stores in batches, so a backend that can do
    /// several writes in one round trip or transaction keeps up with higher miss rates. An
    /// error means any of them may not have been stored.
    async fn put_many(&self, puts: Vec<CachePut>) -> Result<(), CacheError> {
        let mut result = Ok(());
        for p in puts {
            if let Err(e) = self.put(&p.key, p.value, p.ttl).await {
                result = Err(e);
            }
        }
        result
    }

    /// Removes every entry matching `filter` (always within one tenant) and returns how many
    /// it removed. Runs from the admin API, never on the request path.
    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError>;

    /// Approximate size figures, for metrics and the admin API.
    async fn stats(&self) -> Result<CacheStats, CacheError>;
}

/// One answer to store ([`CacheStore::put_many`]).
#[derive(Debug, Clone)]
pub struct CachePut {
    pub key: CacheKey,
    pub value: Arc<CachedResponse>,
    pub ttl: Duration,
}

/// Where the in-process exact cache keeps a copy of its entries so that a restart keeps the
/// cache (the SQLite store). Written off the request path, by the cache's writer.
#[async_trait]
pub trait CacheJournal: Send + Sync {
    /// Every entry not expired at `now` with its expiry, oldest first.
    async fn load(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(CacheKey, CachedResponse, OffsetDateTime)>, CacheError>;
    /// Records each entry (a value under its key until its expiry), replacing what was there;
    /// in one transaction where the journal has them.
    async fn upsert(&self, entries: &[JournaledEntry]) -> Result<(), CacheError>;
    /// Forgets entries (evicted, expired or purged); unknown keys are ignored.
    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError>;
}

/// One entry of the exact cache's journal.
#[derive(Debug, Clone)]
pub struct JournaledEntry {
    pub key: CacheKey,
    pub value: Arc<CachedResponse>,
    pub expires_at: OffsetDateTime,
}

/// Why the cache could not answer. The pipeline never fails a request over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The backend cannot be reached, timed out, or returned something unreadable.
    #[error("the response cache is unavailable: {0}")]
    Unavailable(String),
}

// === impl CacheKey ===

/// The exact-cache key: a tenant and a 32-byte digest of everything in the request that can
/// change the answer (the tenant included). Build it with `tollgate_core::cache::exact_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    tenant: TenantId,
    digest: [u8; 32],
}

impl CacheKey {
    /// A key from its tenant and digest. The digest's producer is responsible for having hashed
    /// the tenant into it; the tenant is also kept so lookups and purges stay tenant-scoped.
    pub const fn new(tenant: TenantId, digest: [u8; 32]) -> Self {
        Self { tenant, digest }
    }

    /// The tenant whose namespace this key lives in.
    pub const fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The request digest.
    pub const fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The digest as 64 lowercase hex characters (for backends keyed by strings).
    pub fn digest_hex(&self) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(64);
        for b in self.digest {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

impl fmt::Display for CacheKey {
    /// `<tenant uuid>:<digest hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tenant, self.digest_hex())
    }
}

// === impl CachedResponse ===

/// What is kept to answer a later identical request, and to meter it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The complete answer as the client got it (a streamed answer is assembled first).
    pub response: ChatResponse,
    /// The model alias the client asked for.
    pub alias: String,
    /// The deployment that produced the answer (shown in `x-tollgate-deployment` on a hit).
    pub deployment: String,
    /// The provider kind of that deployment (`openai`, `anthropic`, ...).
    pub provider: String,
    /// The usage the upstream call reported (or was counted).
    pub usage: Usage,
    /// What the upstream call cost, in nano-dollars: a hit meters it as "cost saved".
    pub cost_nanodollars: u64,
    /// When the answer was stored (wall clock, so every node agrees on age purges).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl CachedResponse {
    /// Approximate size in bytes (the length of its JSON encoding): what a size-bounded backend
    /// weighs the entry at.
    pub fn approx_size(&self) -> usize {
        serde_json::to_vec(self).map_or(0, |v| v.len())
    }
}

// === impl PurgeFilter ===

/// Which entries a purge removes: always one tenant's, optionally only one alias's, optionally
/// only those stored before a point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeFilter {
    pub tenant: TenantId,
    /// Only entries of this model alias.
    pub alias: Option<String>,
    /// Only entries stored strictly before this instant ("older than").
    pub created_before: Option<OffsetDateTime>,
}

impl PurgeFilter {
    /// Every entry of `tenant`.
    pub fn tenant(tenant: TenantId) -> Self {
        Self { tenant, alias: None, created_before: None }
    }

    /// Whether the entry under `key` holding `value` is to be removed.
    pub fn matches(&self, key: &CacheKey, value: &CachedResponse) -> bool {
        key.tenant() == self.tenant
            && self.alias.as_ref().is_none_or(|a| *a == value.alias)
            && self.created_before.is_none_or(|t| value.created_at < t)
    }
}

/// Size figures of a store. Backends that cannot tell a figure report 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Live entries (approximate: expired entries may be counted until swept).
    pub entries: u64,
    /// Their approximate total size in bytes.
    pub bytes: u64,
}

#[cfg(any(test, feature = "test-util"))]
impl CachedResponse {
    /// An empty answer of `alias` stored at `created_at` (1 + 2 tokens, cost 3): the fixture the
    /// crates' tests adjust with struct-update syntax.
    pub fn sample(alias: &str, created_at: OffsetDateTime) -> Self {
        Self {
            response: crate::ChatResponse {
                id: "c".into(),
                object: "chat.completion".into(),
                created: 0,
                model: "m".into(),
                choices: Vec::new(),
                usage: None,
                system_fingerprint: None,
                extra: crate::JsonMap::new(),
            },
            alias: alias.into(),
            deployment: "d".into(),
            provider: "openai".into(),
            usage: crate::Usage::new(1, 2, None),
            cost_nanodollars: 3,
            created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn entry(alias: &str, created_at: OffsetDateTime) -> CachedResponse {
        CachedResponse::sample(alias, created_at)
    }

    #[test]
    fn key_keeps_its_tenant_and_prints_hex() {
        let t = TenantId(Uuid::nil());
        let mut d = [0u8; 32];
        d[0] = 0xab;
        d[31] = 0x01;
        let k = CacheKey::new(t, d);
        assert_eq!(k.tenant(), t);
        assert_eq!(k.digest_hex().len(), 64);
        assert!(k.digest_hex().starts_with("ab00"));
        assert!(k.digest_hex().ends_with("01"));
        assert_eq!(k.to_string(), format!("{t}:{}", k.digest_hex()));
    }

    #[test]
    fn purge_filter_matches_tenant_alias_and_age() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let ka = CacheKey::new(a, [1; 32]);
        let kb = CacheKey::new(b, [1; 32]);
        let old = entry("x", now - Duration::from_secs(7200));
        let new = entry("y", now);

        let all_a = PurgeFilter::tenant(a);
        assert!(all_a.matches(&ka, &old) && all_a.matches(&ka, &new));
        assert!(!all_a.matches(&kb, &old));

        let alias_x = PurgeFilter { alias: Some("x".into()), ..PurgeFilter::tenant(a) };
        assert!(alias_x.matches(&ka, &old) && !alias_x.matches(&ka, &new));

        let aged =
            PurgeFilter { created_before: Some(now - Duration::from_secs(3600)), ..PurgeFilter::tenant(a) };
        assert!(aged.matches(&ka, &old) && !aged.matches(&ka, &new));
    }

    #[test]
    fn cached_response_round_trips_as_json_and_has_a_size() {
        let e = entry("x", OffsetDateTime::UNIX_EPOCH);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<CachedResponse>(&json).unwrap(), e);
        assert_eq!(e.approx_size(), json.len());
    }
}
