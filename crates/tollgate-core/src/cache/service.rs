//! The response cache as the pipeline uses it: the configured store and file rule, the lookup
//! of the `cache` stage, and the queues that store answers off the request path.
//!
//! A cache failure never fails a request: a lookup error is a miss and a write error is logged,
//! both counted in `tollgate_cache_errors_total`.
//!
//! With a semantic cache configured and the request's mode asking for it, an exact miss is
//! looked up by meaning: the last user message is embedded (see [`super::embed`]) and the
//! nearest stored prompt of the request's namespace answers if it is similar enough
//! (`SimilarityThreshold::accepts`); the answer carries the similarity. The embedding is kept with the
//! pending write, so a miss's answer is stored under both keys without embedding twice.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_types::ports::cache::{
    CacheError, CacheKey, CachePut, CacheStats, CacheStore, CachedResponse, PurgeFilter,
};
use tollgate_types::ports::semantic::{SemanticEntry, SemanticPut, SemanticStore};
use tollgate_types::ports::store::{AdminStore, StoreError};
use tollgate_types::tenancy::TenantId;
use tollgate_types::{ChatRequest, ChatResponse, Usage};

use super::embed::{EmbedPrompt, namespace_for};
use super::policy::{CacheMode, CachePolicy, CacheRequest};
use crate::auth::Principal;
use crate::config::{CacheBackend, CacheConfig, SemanticBackend, SemanticConfig};
use crate::registry::{Deployment, ModelRoute};

/// Chat requests by what the cache did: `model` (alias), `status` (`hit`, `semantic-hit`,
/// `miss`, `bypass`).
pub const CACHE_REQUESTS: &str = "tollgate_cache_requests_total";
/// What hits saved: the stored answers' original cost, by `model`.
pub const CACHE_COST_SAVED: &str = "tollgate_cache_cost_saved_nanodollars_total";
/// Cache calls that failed (backend down, slow or unreadable), by `op` (`get`, `put`, `embed`,
/// `semantic_get`, `semantic_put`, `purge`). A failed `put` or `semantic_put` is one batch of
/// the writer.
pub const CACHE_ERRORS: &str = "tollgate_cache_errors_total";
/// Answers not stored because a write queue was full, by `cache` (`exact`, `semantic`).
pub const CACHE_WRITES_DROPPED: &str = "tollgate_cache_writes_dropped_total";
/// Entries in the in-process cache (set at each scrape; absent for Redis, whose count needs a
/// walk of the whole keyspace: see Redis's own `INFO keyspace`).
pub const CACHE_ENTRIES: &str = "tollgate_cache_entries";
/// Their approximate size in bytes (the bound is `cache.max_bytes`).
pub const CACHE_BYTES: &str = "tollgate_cache_bytes";
/// Entries in the in-process semantic cache (set at each scrape).
pub const SEMANTIC_ENTRIES: &str = "tollgate_cache_semantic_entries";
/// Their approximate size in bytes (the bound is `cache.semantic.max_bytes`).
pub const SEMANTIC_BYTES: &str = "tollgate_cache_semantic_bytes";
/// Similarity of semantic hits (histogram, by `model`): how close the accepted matches run to
/// the threshold.
pub const SEMANTIC_SIMILARITY: &str = "tollgate_cache_semantic_similarity";
/// Seconds spent embedding prompts for semantic lookups (histogram).
pub const SEMANTIC_EMBED_SECONDS: &str = "tollgate_cache_semantic_embed_seconds";

/// Answers waiting to be stored, per queue (exact, semantic); past this, new ones are dropped
/// (and counted).
const WRITE_QUEUE: usize = 1024;
/// The most answers one backend call stores (one SQLite transaction, one blocking task of
/// graph inserts).
const WRITE_BATCH: usize = 64;
/// How long shutdown waits for queued writes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How often the writer frees expired semantic entries.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What the cache did for one request: the `x-tollgate-cache` response header and the usage
/// record's `cache_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache (the exact request was seen before).
    Hit,
    /// Answered from the semantic cache (a prompt of the same meaning was seen before).
    SemanticHit,
    /// Looked up, not found (the answer may be stored).
    Miss,
    /// Not looked up: reading is off for this request (by policy, header, `Cache-Control`, or
    /// because the caller has no tenant). A `write-only` request is a bypass that stores.
    Bypass,
}

impl CacheStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The outcome of the `cache` stage.
pub(crate) enum Lookup {
    /// `similarity` is set for a semantic hit.
    Hit { entry: Arc<CachedResponse>, similarity: Option<f32> },
    /// Not answered from the cache; `write` stores the answer once it is complete, if allowed.
    Pass { status: CacheStatus, write: Option<PendingWrite> },
}

/// Where a request's answer goes once it is complete.
pub(crate) struct PendingWrite {
    key: CacheKey,
    ttl: Duration,
    alias: String,
    queues: Queues,
    semantic: Option<SemanticWrite>,
}

/// Where a miss's answer goes in the semantic cache: its namespace, and the prompt with the
/// embedding the lookup computed.
struct SemanticWrite {
    namespace: CacheKey,
    prompt: String,
    embedding: Vec<f32>,
}

/// The writer's two queues. They are separate so that a slow semantic index (graph inserts of
/// about a millisecond each at 100k entries) never costs the exact cache a write.
#[derive(Clone)]
struct Queues {
    exact: mpsc::Sender<CachePut>,
    semantic: mpsc::Sender<SemanticPut>,
}

impl PendingWrite {
    /// Queues `response` (made by `deployment`, with `usage`, costing `cost` nano-dollars).
    /// Never waits: a full queue drops the write.
    pub(crate) fn store(self, response: ChatResponse, deployment: &Deployment, usage: Usage, cost: u64) {
        let value = Arc::new(CachedResponse {
            response,
            alias: self.alias,
            deployment: deployment.name.clone(),
            provider: deployment.provider_kind.to_owned(),
            usage,
            cost_nanodollars: cost,
            created_at: OffsetDateTime::now_utc(),
        });
        if let Some(s) = self.semantic {
            let entry = SemanticEntry { prompt: s.prompt, embedding: s.embedding, value: value.clone() };
            let put = SemanticPut { namespace: s.namespace, entry, ttl: self.ttl };
            if self.queues.semantic.try_send(put).is_err() {
                metrics::counter!(CACHE_WRITES_DROPPED, "cache" => "semantic").increment(1);
            }
        }
        if self.queues.exact.try_send(CachePut { key: self.key, value, ttl: self.ttl }).is_err() {
            metrics::counter!(CACHE_WRITES_DROPPED, "cache" => "exact").increment(1);
        }
    }
}

/// The response cache: its store, the file's rule and TTLs, and the write queues.
pub struct ResponseCache {
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    queues: Queues,
    semantic: Option<Arc<dyn SemanticStore>>,
}

/// Stores queued answers; run it on the gateway's task set ([`CacheWriter::run`]).
pub struct CacheWriter {
    store: Arc<dyn CacheStore>,
    semantic: Option<Arc<dyn SemanticStore>>,
    exact_rx: mpsc::Receiver<CachePut>,
    semantic_rx: mpsc::Receiver<SemanticPut>,
}

impl ResponseCache {
    /// The cache over `store` with the `cache:` section's rule and TTLs, and its writer.
    /// `semantic` is the semantic cache's store, used when `config.semantic` is set.
    pub fn new(
        store: Arc<dyn CacheStore>,
        semantic: Option<Arc<dyn SemanticStore>>,
        config: CacheConfig,
    ) -> (Self, CacheWriter) {
        let semantic = semantic.filter(|_| config.semantic.is_some());
        let (exact, exact_rx) = mpsc::channel(WRITE_QUEUE);
        let (semantic_tx, semantic_rx) = mpsc::channel(WRITE_QUEUE);
        let writer = CacheWriter { store: store.clone(), semantic: semantic.clone(), exact_rx, semantic_rx };
        let queues = Queues { exact, semantic: semantic_tx };
        (Self { store, config, queues, semantic }, writer)
    }

    /// The semantic cache's settings, when it is configured.
    pub fn semantic_config(&self) -> Option<&SemanticConfig> {
        self.config.semantic.as_ref().filter(|_| self.semantic.is_some())
    }

    /// The `cache` stage for a chat request: the caller's policy (file, alias, tenant,
    /// project and key rules, then the request's headers), and a lookup when it may read.
    /// Requests without a tenant (the super-admin key) bypass the cache: entries are a
    /// tenant's. `embedder` embeds the prompt when the request is matched by meaning.
    pub(crate) async fn look_up(
        &self,
        principal: &Principal,
        headers: &CacheRequest,
        route: &ModelRoute,
        req: &ChatRequest,
        embedder: Option<&dyn EmbedPrompt>,
    ) -> Lookup {
        let lookup = self.decide(principal, headers, route, req, embedder).await;
        let status = match &lookup {
            Lookup::Hit { similarity: None, .. } => CacheStatus::Hit,
            Lookup::Hit { similarity: Some(s), .. } => {
                metrics::histogram!(SEMANTIC_SIMILARITY, "model" => route.alias.clone())
                    .record(f64::from(*s));
                CacheStatus::SemanticHit
            }
            Lookup::Pass { status, .. } => *status,
        };
        metrics::counter!(CACHE_REQUESTS, "model" => route.alias.clone(), "status" => status.as_str())
            .increment(1);
        lookup
    }

    async fn decide(
        &self,
        principal: &Principal,
        headers: &CacheRequest,
        route: &ModelRoute,
        req: &ChatRequest,
        embedder: Option<&dyn EmbedPrompt>,
    ) -> Lookup {
        let bypass = Lookup::Pass { status: CacheStatus::Bypass, write: None };
        let Principal::Key(k) = principal else { return bypass };
        let rules = [&self.config.rule, &route.cache, &k.policy.cache, &k.project_cache, &k.key_cache];
        let mode =
            CachePolicy::from_rules(&rules, self.config.default_ttl, self.config.max_ttl).apply(headers);
        if mode.is_bypass() {
            return bypass;
        }
        let key = match super::exact_key(k.tenant_id, req) {
            Ok(key) => key,
            Err(e) => {
                tracing::debug!(error = %e, "the request has no cache key; not cached");
                return bypass;
            }
        };
        let mut write = mode.write.then(|| PendingWrite {
            key,
            ttl: mode.ttl,
            alias: req.model.clone(),
            queues: self.queues.clone(),
            semantic: None,
        });
        if mode.read {
            match self.store.get(&key).await {
                Ok(Some(hit)) => return Lookup::Hit { entry: hit, similarity: None },
                Ok(None) => {}
                Err(e) => {
                    metrics::counter!(CACHE_ERRORS, "op" => "get").increment(1);
                    tracing::warn!(error = %e, "response cache lookup failed; answering as a miss");
                }
            }
        }
        let status = if mode.read { CacheStatus::Miss } else { CacheStatus::Bypass };
        let Some(semantic) = self.semantic_step(k.tenant_id, &mode, req, embedder) else {
            return Lookup::Pass { status, write };
        };
        match semantic.await {
            SemanticOutcome::Hit { entry, similarity } => Lookup::Hit { entry, similarity: Some(similarity) },
            SemanticOutcome::Miss(pending) => {
                if let Some(w) = &mut write {
                    w.semantic = pending;
                }
                Lookup::Pass { status, write }
            }
        }
    }

    /// The semantic part of a lookup, when the mode asks for it and the request can be matched
    /// by meaning: embeds the prompt, then (when reading) finds the nearest stored prompt; all
    /// within `cache.semantic.timeout` (slower is a miss).
    fn semantic_step<'a>(
        &'a self,
        tenant: TenantId,
        mode: &CacheMode,
        req: &ChatRequest,
        embedder: Option<&'a dyn EmbedPrompt>,
    ) -> Option<impl Future<Output = SemanticOutcome> + 'a> {
        let (store, config, embedder) = (self.semantic.as_ref()?, self.config.semantic.as_ref()?, embedder?);
        if !mode.semantic {
            return None;
        }
        let key = match super::semantic_key(tenant, req) {
            Ok(Some(key)) => key,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "the request has no semantic key; matched exactly only");
                return None;
            }
        };
        let (read, write, timeout) = (mode.read, mode.write, config.timeout);
        let lookup = async move {
            let namespace = namespace_for(&key.namespace, &embedder.id());
            let started = tokio::time::Instant::now();
            let embedding = match embedder.embed(&key.prompt).await {
                Ok(v) => v,
                Err(e) => {
                    metrics::counter!(CACHE_ERRORS, "op" => "embed").increment(1);
                    tracing::warn!(error = %e, "could not embed the prompt; semantic cache skipped");
                    return SemanticOutcome::Miss(None);
                }
            };
            metrics::histogram!(SEMANTIC_EMBED_SECONDS).record(started.elapsed().as_secs_f64());
            if read {
                let bar = config.threshold.for_prompt(&key.prompt);
                match store.nearest(&namespace, &embedding, bar).await {
                    Ok(Some(hit)) if config.threshold.accepts(&key.prompt, &hit.prompt, hit.similarity) => {
                        return SemanticOutcome::Hit { entry: hit.value, similarity: hit.similarity };
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics::counter!(CACHE_ERRORS, "op" => "semantic_get").increment(1);
                        tracing::warn!(error = %e, "semantic cache lookup failed; answering as a miss");
                    }
                }
            }
            SemanticOutcome::Miss(write.then_some(SemanticWrite { namespace, prompt: key.prompt, embedding }))
        };
        Some(async move {
            tokio::time::timeout(timeout, lookup).await.unwrap_or_else(|_| {
                metrics::counter!(CACHE_ERRORS, "op" => "semantic_get").increment(1);
                tracing::warn!(?timeout, "semantic cache lookup timed out; answering as a miss");
                SemanticOutcome::Miss(None)
            })
        })
    }

    /// Removes a tenant's entries matching `filter` (admin).
    /// Both the exact and the semantic entries go; the count is their sum.
    pub async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        let exact = self.store.purge(filter).await?;
        let semantic = match &self.semantic {
            Some(s) => s.purge(filter).await?,
            None => 0,
        };
        Ok(exact + semantic)
    }

    /// Purges `tenant`'s entries if the tenant was deleted. The gateway calls it for each tenant
    /// change on the store's change feed (a deletion announces one, on every node); a tenant
    /// that still exists is left alone. The store already deleted the journal and pgvector rows
    /// with the tenant; this clears memory and Redis, so a deleted tenant's prompts and answers
    /// are not kept until their TTL.
    pub async fn forget_if_deleted(&self, admin: &dyn AdminStore, tenant: TenantId) {
        match admin.get_tenant(tenant).await {
            Err(StoreError::NotFound(_)) => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "could not tell whether a changed tenant was deleted");
                return;
            }
        }
        match self.purge(&PurgeFilter::tenant(tenant)).await {
            Ok(n) => {
                tracing::info!(%tenant, purged = n, "the cached answers of a deleted tenant were purged")
            }
            Err(e) => {
                metrics::counter!(CACHE_ERRORS, "op" => "purge").increment(1);
                tracing::warn!(%tenant, error = %e, "could not purge the cached answers of a deleted tenant");
            }
        }
    }

    /// The store's size figures (admin).
    pub async fn stats(&self) -> Result<CacheStats, CacheError> {
        self.store.stats().await
    }

    /// Sets the size gauges, for an in-process store (cheap: counters it keeps); a no-op for
    /// Redis.
    pub async fn update_gauges(&self) {
        if !matches!(self.config.backend, CacheBackend::Memory { .. }) {
            return;
        }
        if let Ok(stats) = self.store.stats().await {
            // f64 is exact up to 2^53, far beyond any real count or size.
            metrics::gauge!(CACHE_ENTRIES).set(stats.entries as f64);
            metrics::gauge!(CACHE_BYTES).set(stats.bytes as f64);
        }
        let memory = self
            .config
            .semantic
            .as_ref()
            .is_some_and(|s| matches!(s.backend, SemanticBackend::Memory { .. }));
        if let Some(semantic) = self.semantic.as_ref().filter(|_| memory)
            && let Ok(stats) = semantic.stats().await
        {
            metrics::gauge!(SEMANTIC_ENTRIES).set(stats.entries as f64);
            metrics::gauge!(SEMANTIC_BYTES).set(stats.bytes as f64);
        }
    }
}

enum SemanticOutcome {
    Hit {
        entry: Arc<CachedResponse>,
        similarity: f32,
    },
    /// Not found; where the answer goes in the semantic cache (if it may be written).
    Miss(Option<SemanticWrite>),
}

impl CacheWriter {
    /// Stores queued answers, in batches, until `shutdown`, then what is still queued (for at
    /// most a few seconds: a cache write is worth little next to a timely exit). The exact and
    /// semantic queues are served side by side. Also frees expired semantic entries every
    /// minute.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { store, semantic, exact_rx, semantic_rx } = self;
        let exact = store_batches(exact_rx, shutdown.clone(), |puts| {
            let store = store.clone();
            async move { logged("put", store.put_many(puts).await) }
        });
        let semantic = async {
            let Some(store) = semantic else { return };
            let writes = store_batches(semantic_rx, shutdown.clone(), |puts| {
                let store = store.clone();
                async move { logged("semantic_put", store.put_many(puts).await) }
            });
            tokio::join!(writes, sweep(&*store, shutdown.clone()));
        };
        tokio::join!(exact, semantic);
    }
}

/// A failed write of the writer: counted under `op` in [`CACHE_ERRORS`] and logged; the
/// requests it came from were answered long ago.
fn logged(op: &'static str, result: Result<(), CacheError>) {
    if let Err(e) = result {
        metrics::counter!(CACHE_ERRORS, "op" => op).increment(1);
        tracing::warn!(op, error = %e, "could not store answers in the response cache");
    }
}

/// Hands what `rx` receives to `put`, up to [`WRITE_BATCH`] at a time, until `shutdown`; then
/// drains the queue within [`DRAIN_DEADLINE`].
async fn store_batches<T, F>(
    mut rx: mpsc::Receiver<T>,
    shutdown: CancellationToken,
    mut put: impl FnMut(Vec<T>) -> F,
) where
    F: Future<Output = ()>,
{
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    return;
                }
                put(std::mem::take(&mut batch)).await;
            }
        }
    }
    rx.close();
    let drain = async {
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            put(std::mem::take(&mut batch)).await;
        }
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
        tracing::warn!("response cache writes still queued at shutdown were dropped");
    }
}

/// Frees expired semantic entries every [`SWEEP_EVERY`] until `shutdown`.
async fn sweep(store: &dyn SemanticStore, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => match store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "expired semantic cache entries freed"),
                Err(e) => tracing::warn!(error = %e, "could not free expired semantic cache entries"),
            },
        }
    }
}
