//! The in-process semantic cache (single node, the default): one [`VectorIndex`] per namespace
//! (an exact scan while small, HNSW above `hnsw_threshold`), the entries beside it, and one
//! least-recently-used order across every namespace so the whole store stays under
//! `max_bytes`. With a [`SemanticJournal`] (the SQLite store), every entry is also written
//! there and [`MemorySemanticStore::restore`] reloads them at start-up, so a restart keeps the
//! cache.
//!
//! One mutex guards the entries and the LRU order; it is held for map updates only. Searching
//! an index and inserting into it happen outside it (the index has its own read-write lock), so
//! lookups in different namespaces, and concurrent lookups in one, do not wait for each other,
//! nor for an insert into another namespace. Puts come in batches from the cache's writer and
//! their graph inserts (about a millisecond each at 100k entries) run on tokio's blocking pool,
//! never on a runtime worker: up to one task per CPU, each with whole namespaces, so different
//! namespaces' graphs are written in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use foldhash::{HashMap, HashMapExt};
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_types::ports::semantic::MAX_SEMANTIC_TTL;
use tollgate_types::ports::{
    CacheError, CacheKey, CacheStats, CachedResponse, JournalRecord, PurgeFilter, SemanticEntry, SemanticHit,
    SemanticJournal, SemanticPut, SemanticStore,
};
use uuid::Uuid;

use super::vector::{IndexParams, VectorIndex};

/// Bytes counted per entry beyond its answer, prompt and f32 vector: the int8 copy and graph
/// links of HNSW, and the maps' bookkeeping.
const ENTRY_OVERHEAD_BYTES: u64 = 384;

/// How many times a lookup skips an entry that expired (or was evicted) under it before
/// answering a miss.
const STALE_RETRIES: usize = 4;

/// The in-process [`SemanticStore`].
pub struct MemorySemanticStore {
    inner: Arc<Inner>,
    journal: Option<Arc<dyn SemanticJournal>>,
    /// Blocking tasks one batch of puts may use (the CPUs available).
    workers: usize,
}

/// The entries and their indexes: shared with the blocking task that inserts a batch.
struct Inner {
    state: Mutex<State>,
    /// The index settings of every namespace (`dim` is taken from its first entry).
    params: IndexParams,
    max_bytes: u64,
}

#[derive(Default)]
struct State {
    spaces: HashMap<CacheKey, Space>,
    /// Least recently used first: tick -> (namespace, slot).
    order: BTreeMap<u64, (CacheKey, u64)>,
    next_tick: u64,
    next_slot: u64,
    bytes: u64,
    /// Entries removed from memory (expired under a lookup) that the journal still holds.
    stale: Vec<Uuid>,
}

struct Space {
    index: Arc<VectorIndex>,
    dim: usize,
    slots: HashMap<u64, Slot>,
}

struct Slot {
    id: Uuid,
    prompt: String,
    value: Arc<CachedResponse>,
    deadline: Instant,
    tick: u64,
    bytes: u64,
}

impl MemorySemanticStore {
    /// A store holding at most about `max_bytes` of entries, each namespace indexed with
    /// `params` (its `dim` is ignored: a namespace takes the length of its first entry).
    pub fn new(params: IndexParams, max_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner { state: Mutex::new(State::default()), params, max_bytes }),
            journal: None,
            workers: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }

    /// Also writes every entry to `journal` (see [`Self::restore`]).
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<dyn SemanticJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Loads the journal's live entries (oldest first, so the LRU order survives the restart)
    /// and returns how many were loaded. Entries that no longer fit are left out (and dropped
    /// from the journal).
    pub async fn restore(&self) -> Result<u64, CacheError> {
        let Some(journal) = &self.journal else { return Ok(0) };
        let now = OffsetDateTime::now_utc();
        let records = journal.load(now).await?;
        let mut loaded = 0;
        let mut dropped = Vec::new();
        let started = Instant::now();
        for r in records {
            let left = r.expires_at - now;
            let ttl = Duration::try_from(left).unwrap_or(Duration::ZERO);
            match self.inner.insert(&r.namespace, r.id, r.entry, ttl, started) {
                Ok(evicted) => {
                    loaded += 1;
                    dropped.extend(evicted);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a journaled semantic-cache entry could not be restored");
                    dropped.push(r.id);
                }
            }
        }
        if !dropped.is_empty() {
            journal.remove(&dropped).await?;
        }
        Ok(loaded)
    }

    /// Removes what `pick` selects, from memory; returns the journal ids.
    fn remove_where(&self, pick: impl FnMut(&CacheKey, &Slot) -> bool) -> Vec<Uuid> {
        self.inner.remove_where(pick)
    }

    async fn forget(&self, mut ids: Vec<Uuid>) -> Result<(), CacheError> {
        let Some(journal) = &self.journal else { return Ok(()) };
        ids.append(&mut std::mem::take(&mut self.inner.state.lock().stale));
        if ids.is_empty() {
            return Ok(());
        }
        journal.remove(&ids).await
    }
}

/// What a batch of puts did: the entries kept (to journal), the ids evicted, the first error.
#[derive(Default)]
struct Inserted {
    kept: Vec<JournalRecord>,
    evicted: Vec<Uuid>,
    error: Option<CacheError>,
}

impl Inner {
    /// Adds `puts` in memory, each expiring its TTL after `now`; with `journaled`, returns
    /// their journal records (expiring on the wall clock, from `wall`).
    fn insert_all(
        &self,
        puts: Vec<SemanticPut>,
        now: Instant,
        wall: OffsetDateTime,
        journaled: bool,
    ) -> Inserted {
        let mut out = Inserted::default();
        for p in puts {
            let id = Uuid::now_v7();
            let record = journaled.then(|| JournalRecord {
                id,
                namespace: p.namespace,
                entry: p.entry.clone(),
                expires_at: wall + p.ttl.min(MAX_SEMANTIC_TTL),
            });
            match self.insert(&p.namespace, id, p.entry, p.ttl, now) {
                Ok(evicted) => {
                    out.evicted.extend(evicted);
                    out.kept.extend(record);
                }
                Err(e) => {
                    out.error.get_or_insert(e);
                }
            }
        }
        // What the batch evicted, its own entries included, is not journaled.
        out.kept.retain(|r| !out.evicted.contains(&r.id));
        out
    }

    /// Adds an entry in memory; returns the ids evicted to make room (this one's, if it can
    /// never fit or its namespace went away while it was being indexed).
    fn insert(
        &self,
        ns: &CacheKey,
        id: Uuid,
        entry: SemanticEntry,
        ttl: Duration,
        now: Instant,
    ) -> Result<Vec<Uuid>, CacheError> {
        let ttl = ttl.min(MAX_SEMANTIC_TTL);
        let dim = entry.embedding.len();
        let bytes = (entry.prompt.len() + entry.value.approx_size() + dim * 4) as u64 + ENTRY_OVERHEAD_BYTES;
        if ttl.is_zero() || bytes > self.max_bytes {
            return Ok(vec![id]);
        }
        let (index, slot) = {
            let mut state = self.state.lock();
            let state = &mut *state;
            let space = state.spaces.entry(*ns).or_insert_with(|| Space {
                index: Arc::new(VectorIndex::new(IndexParams { dim, ..self.params.clone() })),
                dim,
                slots: HashMap::new(),
            });
            if space.dim != dim {
                return Err(CacheError::Unavailable(format!(
                    "an embedding of length {dim} cannot join a namespace of length {}",
                    space.dim
                )));
            }
            let slot = state.next_slot;
            state.next_slot += 1;
            (space.index.clone(), slot)
        };
        // Outside the store's lock: the graph insert is the slow part. Until the slot is
        // registered below, a lookup that finds it takes it for an evicted entry (a miss).
        let indexed = index.insert(slot, &entry.embedding);
        let mut state = self.state.lock();
        let state = &mut *state;
        let Some(space) = state.spaces.get_mut(ns).filter(|s| Arc::ptr_eq(&s.index, &index)) else {
            // The namespace emptied (a purge) and was dropped meanwhile: the entry goes with it.
            index.remove(slot);
            return Ok(vec![id]);
        };
        if let Err(e) = indexed {
            if space.slots.is_empty() {
                state.spaces.remove(ns);
            }
            return Err(CacheError::Unavailable(format!("the semantic index refused an entry: {e}")));
        }
        let tick = state.next_tick;
        state.next_tick += 1;
        space.slots.insert(
            slot,
            Slot { id, prompt: entry.prompt, value: entry.value, deadline: now + ttl, tick, bytes },
        );
        state.order.insert(tick, (*ns, slot));
        state.bytes += bytes;
        let mut evicted = Vec::new();
        while state.bytes > self.max_bytes {
            let Some((_, (victim_ns, victim))) = state.order.pop_first() else { break };
            if let Some(gone) = state.remove(&victim_ns, victim) {
                evicted.push(gone);
            }
        }
        Ok(evicted)
    }

    /// Removes what `pick` selects, from memory; returns the journal ids.
    fn remove_where(&self, mut pick: impl FnMut(&CacheKey, &Slot) -> bool) -> Vec<Uuid> {
        let mut state = self.state.lock();
        let victims: Vec<(CacheKey, u64, u64)> = state
            .spaces
            .iter()
            .flat_map(|(ns, space)| {
                space
                    .slots
                    .iter()
                    .filter(|(_, s)| pick(ns, s))
                    .map(|(slot, s)| (*ns, *slot, s.tick))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut ids = Vec::with_capacity(victims.len());
        for (ns, slot, tick) in victims {
            state.order.remove(&tick);
            ids.extend(state.remove(&ns, slot));
        }
        ids
    }
}

impl State {
    /// Drops slot `slot` of `ns` (its LRU tick must already be gone), and the namespace once
    /// empty; returns its journal id.
    fn remove(&mut self, ns: &CacheKey, slot: u64) -> Option<Uuid> {
        let space = self.spaces.get_mut(ns)?;
        let gone = space.slots.remove(&slot)?;
        space.index.remove(slot);
        if space.slots.is_empty() {
            self.spaces.remove(ns);
        }
        self.bytes = self.bytes.saturating_sub(gone.bytes);
        Some(gone.id)
    }
}

#[async_trait]
impl SemanticStore for MemorySemanticStore {
    async fn nearest(
        &self,
        namespace: &CacheKey,
        embedding: &[f32],
        min_similarity: f32,
    ) -> Result<Option<SemanticHit>, CacheError> {
        let index = {
            let state = self.inner.state.lock();
            match state.spaces.get(namespace) {
                Some(space) if space.dim == embedding.len() => space.index.clone(),
                _ => return Ok(None),
            }
        };
        for _ in 0..STALE_RETRIES {
            let Some((slot, similarity)) = index.nearest(embedding, min_similarity) else { return Ok(None) };
            let mut state = self.inner.state.lock();
            let state = &mut *state;
            let Some(space) = state.spaces.get_mut(namespace) else { return Ok(None) };
            let Some(found) = space.slots.get_mut(&slot) else {
                // Evicted between the search and now (the index no longer has it either), or
                // still being added.
                continue;
            };
            if found.deadline <= Instant::now() {
                let tick = found.tick;
                state.order.remove(&tick);
                if let Some(id) = state.remove(namespace, slot) {
                    state.stale.push(id);
                }
                continue;
            }
            // Most recently used now.
            state.order.remove(&found.tick);
            found.tick = state.next_tick;
            state.next_tick += 1;
            state.order.insert(found.tick, (*namespace, slot));
            return Ok(Some(SemanticHit {
                prompt: found.prompt.clone(),
                value: found.value.clone(),
                similarity,
            }));
        }
        Ok(None)
    }

    async fn put(&self, namespace: &CacheKey, entry: SemanticEntry, ttl: Duration) -> Result<(), CacheError> {
        self.put_many(vec![SemanticPut { namespace: *namespace, entry, ttl }]).await
    }

    /// The batch's namespaces shared among up to one blocking task per CPU (a namespace's
    /// entries stay in one task, in order): a namespace's graph takes one insert at a time, but
    /// the graphs of different namespaces (tenants, aliases) are written at once.
    async fn put_many(&self, puts: Vec<SemanticPut>) -> Result<(), CacheError> {
        let journaled = self.journal.is_some();
        let (now, wall) = (Instant::now(), OffsetDateTime::now_utc());
        let mut groups: HashMap<CacheKey, Vec<SemanticPut>> = HashMap::new();
        for p in puts {
            groups.entry(p.namespace).or_default().push(p);
        }
        // No more tasks than CPUs: past that, more threads only contend for the store's lock.
        let mut shares: Vec<Vec<SemanticPut>> = Vec::new();
        shares.resize_with(self.workers.min(groups.len()), Vec::new);
        for (k, group) in groups.into_values().enumerate() {
            if let Some(share) = shares.get_mut(k % self.workers) {
                share.extend(group);
            }
        }
        let tasks = shares.into_iter().map(|group| {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.insert_all(group, now, wall, journaled))
        });
        let mut done = Inserted::default();
        for result in futures::future::join_all(tasks).await {
            let part = result.map_err(|e| {
                CacheError::Unavailable(format!("the semantic index's insert task failed: {e}"))
            })?;
            done.kept.extend(part.kept);
            done.evicted.extend(part.evicted);
            done.error = done.error.or(part.error);
        }
        // An entry one group kept may have been evicted by another's insert.
        done.kept.retain(|r| !done.evicted.contains(&r.id));
        if let (Some(journal), false) = (&self.journal, done.kept.is_empty()) {
            journal.insert(&done.kept).await?;
        }
        self.forget(done.evicted).await?;
        done.error.map_or(Ok(()), Err)
    }

    async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        let ids = self.remove_where(|ns, slot| filter.matches(ns, &slot.value));
        let count = ids.len() as u64;
        self.forget(ids).await?;
        Ok(count)
    }

    async fn stats(&self) -> Result<CacheStats, CacheError> {
        let state = self.inner.state.lock();
        Ok(CacheStats { entries: state.order.len() as u64, bytes: state.bytes })
    }

    async fn purge_expired(&self) -> Result<u64, CacheError> {
        let now = Instant::now();
        let ids = self.remove_where(|_, slot| slot.deadline <= now);
        let count = ids.len() as u64;
        self.forget(ids).await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::contract::entry;
    use crate::cache::semantic_contract::{SemanticFixture, namespace, unit};
    use tollgate_types::tenancy::TenantId;

    async fn fixture() -> SemanticFixture {
        // A low HNSW threshold so the contract's 300-entry test runs through the graph.
        let params = IndexParams { hnsw_threshold: 64, background_build: false, ..IndexParams::default() };
        SemanticFixture {
            store: Arc::new(MemorySemanticStore::new(params, 64 << 20)),
            dim: 32,
            guard: Box::new(()),
        }
    }

    crate::semantic_contract!(fixture());

    fn stored(prompt: &str, seed: u64) -> SemanticEntry {
        SemanticEntry { prompt: prompt.into(), embedding: unit(16, seed), value: Arc::new(entry(prompt)) }
    }

    #[tokio::test]
    async fn the_least_recently_used_entries_go_first_past_the_bound() {
        let one = stored("0", 0);
        let size = (one.prompt.len() + one.value.approx_size() + 16 * 4) as u64 + ENTRY_OVERHEAD_BYTES;
        // Room for three entries and a half: sizes vary by a few bytes (timestamps in the JSON).
        let bound = size * 7 / 2;
        let store = MemorySemanticStore::new(IndexParams::default(), bound);
        let ns = namespace(TenantId::new(), 1);
        let minute = Duration::from_secs(60);
        for seed in 0..3 {
            store.put(&ns, stored(&seed.to_string(), seed), minute).await.unwrap();
        }
        // Touch entry 0, so entry 1 is now the least recently used.
        assert!(store.nearest(&ns, &unit(16, 0), 0.99).await.unwrap().is_some());
        store.put(&ns, stored("3", 3), minute).await.unwrap();
        assert!(store.nearest(&ns, &unit(16, 1), 0.99).await.unwrap().is_none(), "1 was evicted");
        for seed in [0, 2, 3] {
            assert!(store.nearest(&ns, &unit(16, seed), 0.99).await.unwrap().is_some(), "{seed} stays");
        }
        let stats = store.stats().await.unwrap();
        assert!(stats.entries == 3 && stats.bytes <= bound, "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn purge_expired_frees_the_space() {
        let store = MemorySemanticStore::new(IndexParams::default(), 1 << 20);
        let ns = namespace(TenantId::new(), 1);
        store.put(&ns, stored("a", 1), Duration::from_secs(10)).await.unwrap();
        store.put(&ns, stored("b", 2), Duration::from_secs(100)).await.unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert_eq!(store.stats().await.unwrap().entries, 1);
    }

    #[tokio::test]
    async fn an_entry_of_another_length_is_refused_in_an_existing_namespace() {
        let store = MemorySemanticStore::new(IndexParams::default(), 1 << 20);
        let ns = namespace(TenantId::new(), 1);
        store.put(&ns, stored("a", 1), Duration::from_secs(60)).await.unwrap();
        let other = SemanticEntry { embedding: unit(8, 1), ..stored("b", 2) };
        assert!(store.put(&ns, other, Duration::from_secs(60)).await.is_err());
    }

    /// A journal in memory: what a restart would find.
    #[derive(Default)]
    struct Journal(Mutex<Vec<JournalRecord>>);

    #[async_trait]
    impl SemanticJournal for Journal {
        async fn load(&self, now: OffsetDateTime) -> Result<Vec<JournalRecord>, CacheError> {
            Ok(self.0.lock().iter().filter(|r| r.expires_at > now).cloned().collect())
        }
        async fn insert(&self, records: &[JournalRecord]) -> Result<(), CacheError> {
            self.0.lock().extend_from_slice(records);
            Ok(())
        }
        async fn remove(&self, ids: &[Uuid]) -> Result<(), CacheError> {
            self.0.lock().retain(|r| !ids.contains(&r.id));
            Ok(())
        }
    }

    /// A batch over many namespaces, inserted in parallel, evicting across them: the bound
    /// holds, and the journal holds exactly the entries left in memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parallel_batch_keeps_the_bound_and_the_journal_in_step() {
        let one = stored("00", 0);
        let size = (one.prompt.len() + one.value.approx_size() + 16 * 4) as u64 + ENTRY_OVERHEAD_BYTES;
        let bound = size * 20;
        let journal = Arc::new(Journal::default());
        let store = MemorySemanticStore::new(IndexParams::default(), bound).with_journal(journal.clone());
        let tenant = TenantId::new();
        let minute = Duration::from_secs(60);
        for round in 0..3u64 {
            let puts = (0..48u64)
                .map(|k| {
                    let seed = round * 100 + k;
                    SemanticPut {
                        namespace: namespace(tenant, (k % 8) as u8),
                        entry: stored(&format!("{seed:02}"), seed),
                        ttl: minute,
                    }
                })
                .collect();
            store.put_many(puts).await.unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert!(stats.bytes <= bound && stats.entries >= 15, "{stats:?}");
        let rows = journal.0.lock().clone();
        assert_eq!(rows.len() as u64, stats.entries, "one journal row per entry in memory");
        for r in rows {
            let hit = store.nearest(&r.namespace, &r.entry.embedding, 0.999).await.unwrap();
            assert_eq!(hit.map(|h| h.prompt), Some(r.entry.prompt), "journaled entries are live");
        }
    }

    #[tokio::test]
    async fn a_restart_restores_the_journaled_entries() {
        let journal = Arc::new(Journal::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        let first = MemorySemanticStore::new(IndexParams::default(), 1 << 20).with_journal(journal.clone());
        let minute = Duration::from_secs(60);
        first.put(&namespace(a, 1), stored("kept", 1), minute).await.unwrap();
        first.put(&namespace(a, 2), stored("other alias", 2), minute).await.unwrap();
        first.put(&namespace(b, 1), stored("b's", 3), minute).await.unwrap();
        first.put(&namespace(b, 1), stored("gone at once", 4), Duration::ZERO).await.unwrap();
        assert_eq!(first.purge(&PurgeFilter::tenant(b)).await.unwrap(), 1);
        assert_eq!(journal.0.lock().len(), 2, "purged and zero-TTL entries are not journaled");

        let second = MemorySemanticStore::new(IndexParams::default(), 1 << 20).with_journal(journal.clone());
        assert_eq!(second.restore().await.unwrap(), 2);
        let hit = second.nearest(&namespace(a, 1), &unit(16, 1), 0.99).await.unwrap().unwrap();
        assert_eq!(hit.prompt, "kept");
        assert!(
            second.nearest(&namespace(b, 1), &unit(16, 3), 0.99).await.unwrap().is_none(),
            "purged stays gone"
        );
        assert_eq!(second.purge(&PurgeFilter::tenant(a)).await.unwrap(), 2);
        assert!(journal.0.lock().is_empty(), "purges reach the journal");
    }
}
