//! The in-process exact cache (single node, the default backend): a bounded concurrent LRU with a
//! TTL per entry, built on `moka`'s async cache.
//!
//! Entries are weighed by their approximate size in bytes ([`CachedResponse::approx_size`] plus
//! the key), and the cache holds at most [`MemoryCacheStore::new`]'s `max_bytes`; past that the
//! least recently used entries are evicted. An entry larger than the whole bound is not kept.
//!
//! Expiry is checked twice: moka drops entries at their TTL, and every read also compares the
//! entry's deadline (on tokio's clock) so an expired entry is never returned, even between
//! moka's maintenance runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use tokio::time::Instant;
use tollgate_types::ports::{CacheError, CacheKey, CacheStats, CacheStore, CachedResponse, PurgeFilter};

/// Weight added to every entry for the key, the entry's bookkeeping and moka's own.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// The longest an entry is kept, whatever TTL it was put with: keeps deadline arithmetic far
/// from overflow (and moka's own limit on expiry durations).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);

/// The in-process [`CacheStore`].
#[derive(Clone)]
pub struct MemoryCacheStore {
    cache: Cache<CacheKey, Stored>,
    max_bytes: u64,
}

#[derive(Clone)]
struct Stored {
    value: Arc<CachedResponse>,
    ttl: Duration,
    deadline: Instant,
    weight: u32,
}

/// Each entry lives for the TTL it was put with; a re-put starts a new TTL.
struct PerEntryTtl;

impl Expiry<CacheKey, Stored> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Stored,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Stored,
        _now: std::time::Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryCacheStore {
    /// A cache holding at most about `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, v: &Stored| v.weight)
            .expire_after(PerEntryTtl)
            // Plain LRU: a fresh answer is the likeliest to be asked again soon; TinyLFU's
            // admission filter would turn new entries away until they are seen twice.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { cache, max_bytes }
    }

    /// The byte bound this store was built with.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[async_trait]
impl CacheStore for MemoryCacheStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<CachedResponse>>, CacheError> {
        let Some(stored) = self.cache.get(key).await else { return Ok(None) };
        if Instant::now() >= stored.deadline {
            self.cache.invalidate(key).await;
            return Ok(None);
        }
        Ok(Some(stored.value))
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResponse>, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            return Ok(());
        }
        let ttl = ttl.min(MAX_TTL);
        let size = value.approx_size().saturating_add(ENTRY_OVERHEAD_BYTES);
        let weight = u32::try_from(size).unwrap_or(u32::MAX);
        if u64::from(weight) > self.max_bytes {
            // It would evict everything and then itself; keep what is there instead.
            self.cache.invalidate(key).await;
            return Ok(());
        }
        let deadline = Instant::now() + ttl;
        self.cache.insert(*key, Stored { value, ttl, deadline, weight }).await;
        // moka applies evictions in batches; running them now keeps the bound strict (a put
        // follows an upstream call, so this small cost is not on a hit's path).
        self.cache.run_pending_tasks().await;
        Ok(())
    }

    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        // An admin operation: a full scan is fine, and unlike moka's lazy invalidation
        // predicates it removes the entries now and can count them.
        let doomed: Vec<Arc<CacheKey>> =
            self.cache.iter().filter(|(k, v)| filter.matches(k, &v.value)).map(|(k, _)| k).collect();
        let mut removed = 0;
        for key in doomed {
            if self.cache.remove(&*key).await.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn stats(&self) -> Result<CacheStats, CacheError> {
        self.cache.run_pending_tasks().await;
        Ok(CacheStats { entries: self.cache.entry_count(), bytes: self.cache.weighted_size() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::contract::{Fixture, entry, key};
    use tollgate_types::tenancy::TenantId;

    crate::cache_contract!(memory_fixture());

    const CAPACITY: u64 = 64 * 1024;

    async fn memory_fixture() -> Fixture {
        Fixture {
            store: Arc::new(MemoryCacheStore::new(CAPACITY)),
            capacity_bytes: CAPACITY,
            guard: Box::new(()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_tokio_time_even_before_moka_expires_it() {
        let store = MemoryCacheStore::new(CAPACITY);
        let t = TenantId::new();
        let k = key(t, "p");
        store.put(&k, Arc::new(entry("a")), Duration::from_secs(60)).await.unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(store.get(&k).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(store.get(&k).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lru_keeps_the_most_recent_entries() {
        let store = MemoryCacheStore::new(CAPACITY);
        let t = TenantId::new();
        let e = Arc::new(entry("a"));
        let per = e.approx_size() as u64 + ENTRY_OVERHEAD_BYTES as u64;
        let n = (CAPACITY / per) * 3;
        for i in 0..n {
            store.put(&key(t, &i.to_string()), e.clone(), Duration::from_secs(600)).await.unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert!(stats.bytes <= CAPACITY, "{stats:?}");
        assert!(store.get(&key(t, &(n - 1).to_string())).await.unwrap().is_some(), "newest entry kept");
        assert!(store.get(&key(t, "0")).await.unwrap().is_none(), "oldest entry evicted");
    }

    #[tokio::test]
    async fn a_huge_ttl_is_capped_not_a_panic() {
        let store = MemoryCacheStore::new(CAPACITY);
        let k = key(TenantId::new(), "p");
        store.put(&k, Arc::new(entry("a")), Duration::MAX).await.unwrap();
        assert!(store.get(&k).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn an_entry_larger_than_the_bound_is_not_kept() {
        let store = MemoryCacheStore::new(256);
        let k = key(TenantId::new(), "p");
        store.put(&k, Arc::new(entry(&"x".repeat(1024))), Duration::from_secs(60)).await.unwrap();
        assert!(store.get(&k).await.unwrap().is_none());
        assert_eq!(store.stats().await.unwrap().entries, 0);
    }
}
