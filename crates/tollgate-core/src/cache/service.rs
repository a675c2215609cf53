//! The response cache as the pipeline uses it: the configured store and file rule, the lookup
//! of the `cache` stage, and the queue that stores answers off the request path.
//!
//! A cache failure never fails a request: a lookup error is a miss and a write error is logged,
//! both counted in `tollgate_cache_errors_total`.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_types::ports::cache::{
    CacheError, CacheKey, CacheStats, CacheStore, CachedResponse, PurgeFilter,
};
use tollgate_types::{ChatRequest, ChatResponse, Usage};

use super::policy::{CachePolicy, CacheRequest};
use crate::auth::Principal;
use crate::config::{CacheBackend, CacheConfig};
use crate::registry::{Deployment, ModelRoute};

/// Chat requests by what the cache did: `model` (alias), `status` (`hit`, `miss`, `bypass`).
pub const CACHE_REQUESTS: &str = "tollgate_cache_requests_total";
/// What hits saved: the stored answers' original cost, by `model`.
pub const CACHE_COST_SAVED: &str = "tollgate_cache_cost_saved_nanodollars_total";
/// Cache calls that failed (backend down, slow or unreadable), by `op` (`get`, `put`).
pub const CACHE_ERRORS: &str = "tollgate_cache_errors_total";
/// Answers not stored because the write queue was full.
pub const CACHE_WRITES_DROPPED: &str = "tollgate_cache_writes_dropped_total";
/// Entries in the in-process cache (set at each scrape; absent for Redis, whose count needs a
/// walk of the whole keyspace: see Redis's own `INFO keyspace`).
pub const CACHE_ENTRIES: &str = "tollgate_cache_entries";
/// Their approximate size in bytes (the bound is `cache.max_bytes`).
pub const CACHE_BYTES: &str = "tollgate_cache_bytes";

/// Answers waiting to be stored; past this, new ones are dropped (and counted).
const WRITE_QUEUE: usize = 1024;
/// How long shutdown waits for queued writes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// What the cache did for one request: the `x-tollgate-cache` response header and the usage
/// record's `cache_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache.
    Hit,
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
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The outcome of the `cache` stage.
pub(crate) enum Lookup {
    Hit(Arc<CachedResponse>),
    /// Not answered from the cache; `write` stores the answer once it is complete, if allowed.
    Pass {
        status: CacheStatus,
        write: Option<PendingWrite>,
    },
}

/// Where a request's answer goes once it is complete.
pub(crate) struct PendingWrite {
    key: CacheKey,
    ttl: Duration,
    alias: String,
    queue: mpsc::Sender<Write>,
}

struct Write {
    key: CacheKey,
    value: Arc<CachedResponse>,
    ttl: Duration,
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
        if self.queue.try_send(Write { key: self.key, value, ttl: self.ttl }).is_err() {
            metrics::counter!(CACHE_WRITES_DROPPED).increment(1);
        }
    }
}

/// The response cache: its store, the file's rule and TTLs, and the write queue.
pub struct ResponseCache {
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    queue: mpsc::Sender<Write>,
}

/// Stores queued answers; run it on the gateway's task set ([`CacheWriter::run`]).
pub struct CacheWriter {
    store: Arc<dyn CacheStore>,
    rx: mpsc::Receiver<Write>,
}

impl ResponseCache {
    /// The cache over `store` with the `cache:` section's rule and TTLs, and its writer.
    pub fn new(store: Arc<dyn CacheStore>, config: CacheConfig) -> (Self, CacheWriter) {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        (Self { store: store.clone(), config, queue }, CacheWriter { store, rx })
    }

    /// The `cache` stage for a chat request: the caller's policy (file, alias, tenant,
    /// project and key rules, then the request's headers), and a lookup when it may read.
    /// Requests without a tenant (the super-admin key) bypass the cache: entries are a
    /// tenant's.
    pub(crate) async fn look_up(
        &self,
        principal: &Principal,
        headers: &CacheRequest,
        route: &ModelRoute,
        req: &ChatRequest,
    ) -> Lookup {
        let lookup = self.decide(principal, headers, route, req).await;
        let status = match &lookup {
            Lookup::Hit(_) => CacheStatus::Hit,
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
        let write = mode.write.then(|| PendingWrite {
            key,
            ttl: mode.ttl,
            alias: req.model.clone(),
            queue: self.queue.clone(),
        });
        if !mode.read {
            return Lookup::Pass { status: CacheStatus::Bypass, write };
        }
        match self.store.get(&key).await {
            Ok(Some(hit)) => Lookup::Hit(hit),
            Ok(None) => Lookup::Pass { status: CacheStatus::Miss, write },
            Err(e) => {
                metrics::counter!(CACHE_ERRORS, "op" => "get").increment(1);
                tracing::warn!(error = %e, "response cache lookup failed; answering as a miss");
                Lookup::Pass { status: CacheStatus::Miss, write }
            }
        }
    }

    /// Removes a tenant's entries matching `filter` (admin).
    pub async fn purge(&self, filter: &PurgeFilter) -> Result<u64, CacheError> {
        self.store.purge(filter).await
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
    }
}

impl CacheWriter {
    /// Stores queued answers until `shutdown`, then what is still queued (for at most a few
    /// seconds: a cache write is worth little next to a timely exit).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                write = self.rx.recv() => match write {
                    Some(w) => self.put(w).await,
                    None => return,
                },
            }
        }
        self.rx.close();
        let drain = async {
            while let Some(w) = self.rx.recv().await {
                self.put(w).await;
            }
        };
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            tracing::warn!("response cache writes still queued at shutdown were dropped");
        }
    }

    async fn put(&self, w: Write) {
        if let Err(e) = self.store.put(&w.key, w.value, w.ttl).await {
            metrics::counter!(CACHE_ERRORS, "op" => "put").increment(1);
            tracing::warn!(error = %e, "could not store an answer in the response cache");
        }
    }
}
