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
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_types::ports::{
    CacheError, CacheJournal, CacheKey, CachePut, CacheStats, CacheStore, CachedResponse, JournaledEntry,
    PurgeFilter,
};

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
    /// With a journal (the SQLite store), entries survive a restart ([`Self::restore`]).
    journal: Option<Arc<dyn CacheJournal>>,
    /// Keys moka evicted (size or expiry) that the journal still holds.
    gone: Arc<Mutex<Vec<CacheKey>>>,
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
        Self::with_journal(max_bytes, None)
    }

    /// [`Self::new`], also writing every entry to `journal` (see [`Self::restore`]).
    pub fn with_journal(max_bytes: u64, journal: Option<Arc<dyn CacheJournal>>) -> Self {
        let gone: Arc<Mutex<Vec<CacheKey>>> = Arc::default();
        let evicted = gone.clone();
        let journaled = journal.is_some();
        let cache = Cache::builder()
            .eviction_listener(move |key: Arc<CacheKey>, _value: Stored, cause: RemovalCause| {
                if journaled && cause.was_evicted() {
                    evicted.lock().push(*key);
                }
            })
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, v: &Stored| v.weight)
            .expire_after(PerEntryTtl)
            // Plain LRU: a fresh answer is the likeliest to be asked again soon; TinyLFU's
            // admission filter would turn new entries away until they are seen twice.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { cache, max_bytes, journal, gone }
    }

    /// Loads the journal's live entries (oldest first, so recency survives the restart) and
    /// returns how many were loaded.
    pub async fn restore(&self) -> Result<u64, CacheError> {
        let Some(journal) = &self.journal else { return Ok(0) };
        let now = OffsetDateTime::now_utc();
        let mut loaded = 0;
        for (key, value, expires_at) in journal.load(now).await? {
            let ttl = Duration::try_from(expires_at - now).unwrap_or(Duration::ZERO).min(MAX_TTL);
            if let Some(stored) = self.stored(Arc::new(value), ttl) {
                self.cache.insert(key, stored).await;
                loaded += 1;
            }
        }
        self.cache.run_pending_tasks().await;
        self.forget(Vec::new()).await?;
        Ok(loaded)
    }

    /// The entry to keep for `value`, or `None` when it can never fit (or lives no time).
    fn stored(&self, value: Arc<CachedResponse>, ttl: Duration) -> Option<Stored> {
        let size = value.approx_size().saturating_add(ENTRY_OVERHEAD_BYTES);
        let weight = u32::try_from(size).unwrap_or(u32::MAX);
        (!ttl.is_zero() && u64::from(weight) <= self.max_bytes).then(|| Stored {
            value,
            ttl,
            deadline: Instant::now() + ttl,
            weight,
        })
    }

    /// Removes `keys`, and whatever moka evicted since the last call, from the journal.
    async fn forget(&self, mut keys: Vec<CacheKey>) -> Result<(), CacheError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        keys.append(&mut std::mem::take(&mut *self.gone.lock()));
        if keys.is_empty() {
            return Ok(());
        }
        journal.remove(&keys).await
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
            if self.journal.is_some() {
                self.gone.lock().push(*key);
            }
            return Ok(None);
        }
        Ok(Some(stored.value))
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResponse>, ttl: Duration) -> Result<(), CacheError> {
        self.put_many(vec![CachePut { key: *key, value, ttl }]).await
    }

    async fn put_many(&self, puts: Vec<CachePut>) -> Result<(), CacheError> {
        let mut written = Vec::with_capacity(puts.len());
        let mut refused = Vec::new();
        for CachePut { key, value, ttl } in puts {
            if ttl.is_zero() {
                continue;
            }
            let ttl = ttl.min(MAX_TTL);
            let Some(stored) = self.stored(value.clone(), ttl) else {
                // It would evict everything and then itself; keep what is there instead.
                self.cache.invalidate(&key).await;
                refused.push(key);
                continue;
            };
            self.cache.insert(key, stored).await;
            written.push(JournaledEntry { key, value, expires_at: OffsetDateTime::now_utc() + ttl });
        }
        // moka applies evictions in batches; running them now keeps the bound strict (puts
        // follow upstream calls, so this small cost is not on a hit's path).
        self.cache.run_pending_tasks().await;
        // Evictions first: an earlier eviction of a key put again here must not delete its new
        // row. What this batch itself evicted is not journaled at all.
        self.forget(refused).await?;
        let Some(journal) = &self.journal else { return Ok(()) };
        written.retain(|w| self.cache.contains_key(&w.key));
        if written.is_empty() {
            return Ok(());
        }
        journal.upsert(&written).await
    }

    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        // An admin operation: a full scan is fine, and unlike moka's lazy invalidation
        // predicates it removes the entries now and can count them.
        let doomed: Vec<Arc<CacheKey>> =
            self.cache.iter().filter(|(k, v)| filter.matches(k, &v.value)).map(|(k, _)| k).collect();
        let mut removed = Vec::new();
        for key in doomed {
            if self.cache.remove(&*key).await.is_some() {
                removed.push(*key);
            }
        }
        let count = removed.len() as u64;
        self.forget(removed).await?;
        Ok(count)
    }

    async fn stats(&self) -> Result<CacheStats, CacheError> {
        self.cache.run_pending_tasks().await;
        Ok(CacheStats { entries: self.cache.entry_count(), bytes: self.cache.weighted_size() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

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

    /// A journal in memory: what a restart would find.
    #[derive(Default)]
    struct Journal(Mutex<Vec<(CacheKey, CachedResponse, OffsetDateTime)>>);

    #[async_trait]
    impl CacheJournal for Journal {
        async fn load(
            &self,
            now: OffsetDateTime,
        ) -> Result<Vec<(CacheKey, CachedResponse, OffsetDateTime)>, CacheError> {
            Ok(self.0.lock().iter().filter(|(_, _, at)| *at > now).cloned().collect())
        }
        async fn upsert(&self, entries: &[JournaledEntry]) -> Result<(), CacheError> {
            let mut rows = self.0.lock();
            for e in entries {
                rows.retain(|(k, _, _)| *k != e.key);
                rows.push((e.key, (*e.value).clone(), e.expires_at));
            }
            Ok(())
        }
        async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
            self.0.lock().retain(|(k, _, _)| !keys.contains(k));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_restart_restores_the_journaled_entries_and_evictions_and_purges_reach_the_journal() {
        let journal = Arc::new(Journal::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        let minute = Duration::from_secs(60);
        let e = Arc::new(entry("a"));
        let per = e.approx_size() as u64 + ENTRY_OVERHEAD_BYTES as u64;
        // Room for three entries.
        let first = MemoryCacheStore::with_journal(per * 3 + per / 2, Some(journal.clone()));
        for p in ["1", "2", "3", "4"] {
            first.put(&key(a, p), e.clone(), minute).await.unwrap();
        }
        first.put(&key(b, "1"), e.clone(), minute).await.unwrap();
        let kept = |j: &Journal| j.0.lock().iter().filter(|(k, _, _)| k.tenant() == a).count();
        assert_eq!(journal.0.lock().len(), 3, "evicted entries leave the journal");
        assert_eq!(first.purge(&PurgeFilter::tenant(b)).await.unwrap(), 1);
        assert_eq!(kept(&journal), 2);
        assert_eq!(journal.0.lock().len(), 2, "purged entries leave the journal");

        let second = MemoryCacheStore::with_journal(per * 3 + per / 2, Some(journal.clone()));
        assert_eq!(second.restore().await.unwrap(), 2);
        for p in ["3", "4"] {
            assert!(second.get(&key(a, p)).await.unwrap().is_some(), "{p} survives the restart");
        }
        assert!(second.get(&key(b, "1")).await.unwrap().is_none());
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
