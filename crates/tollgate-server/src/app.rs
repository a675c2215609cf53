//! The axum application: routes and the layer stack.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tollgate_core::Gateway;
use tollgate_core::alerts::{AlertNotifier, AlertSettings, AlertWorker};
use tollgate_core::auth::Authenticator;
use tollgate_core::byok::TenantCredentials;
use tollgate_core::cache::vector::IndexParams;
use tollgate_core::cache::{CacheWriter, EmbedPrompt, MemoryCacheStore, MemorySemanticStore, ResponseCache};
use tollgate_core::config::{
    CacheBackend, Config, ConfigError, EmbeddingSource, LimiterBackend, SemanticBackend,
};
use tollgate_core::limits::{Enforcer, MemoryRateLimiter, PolicyRateLimiter, SettleWorker};
use tollgate_core::metering::Pricer;
use tollgate_core::registry::Registry;
use tollgate_core::secrets::MasterKeys;
use tollgate_core::usage_sink::{SinkConfig, UsageWriter, usage_sink};
use tollgate_types::ports::cache::CacheStore;
use tollgate_types::ports::semantic::SemanticStore;
use tollgate_types::ports::store::{Change, ChangeEvent, Store};
use tollgate_types::ports::usage::UsageSink;
use tollgate_types::ports::{Clock, RateLimiter, SystemClock};
use tollgate_types::{ErrorKind, GatewayError};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::errors::ApiError;
use crate::ingress::openai;
use crate::{auth, observe};

/// Shared by all handlers. One `Arc`, so the clone every middleware and extractor makes is a
/// single reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct SharedState {
    pub gateway: Arc<Gateway>,
    /// Keys → principals (the bootstrap key, and tenants' keys through the store).
    pub auth: Arc<Authenticator>,
    /// Tenancy records; `None` runs the gateway with the bootstrap key only.
    pub store: Option<Store>,
    /// Seals tenants' provider credentials.
    pub master_keys: Arc<MasterKeys>,
    /// The provider names of the config: tenants may register credentials for these only.
    pub providers: Arc<HashSet<String>>,
    pub metrics: PrometheusHandle,
    pub max_body_bytes: usize,
    /// Permits for requests in flight; none left means shed with 503.
    pub in_flight: Arc<Semaphore>,
    /// The usage sink's writer, until `spawn_background` starts it.
    usage_writer: parking_lot::Mutex<Option<UsageWriter>>,
    /// The limit settlement worker, until `spawn_background` starts it.
    settle_worker: parking_lot::Mutex<Option<SettleWorker>>,
    /// The response cache's writer, until `spawn_background` starts it.
    cache_writer: parking_lot::Mutex<Option<CacheWriter>>,
    /// `usage.retention_days` (`None`: usage records are kept forever).
    retention_days: Option<u32>,
    /// `routing.health_check_interval` (`None`: no active health checks).
    health_check_interval: Option<std::time::Duration>,
    /// The budget-alert delivery worker, until `spawn_background` starts it.
    alert_worker: parking_lot::Mutex<Option<AlertWorker>>,
}

impl AppState {
    /// Builds the state a config describes: the registry (every adapter and HTTP client), the
    /// authenticator and the limits. `admin_key` is the bootstrap (super-admin) key. A
    /// configured semantic cache is kept in process, without persistence (see
    /// [`Self::from_config_with`]).
    pub fn from_config(
        config: &Config,
        admin_key: &SecretString,
        store: Option<Store>,
        master_keys: MasterKeys,
    ) -> Result<Self, ConfigError> {
        Self::from_config_with(config, admin_key, store, master_keys, CacheParts::default())
    }

    /// [`Self::from_config`] with the cache's stores and local model made by the caller (they
    /// need I/O to open: journals, pgvector, model files).
    pub fn from_config_with(
        config: &Config,
        admin_key: &SecretString,
        store: Option<Store>,
        master_keys: MasterKeys,
        semantic: CacheParts,
    ) -> Result<Self, ConfigError> {
        let registry = Registry::build(config)?;
        let master_keys = Arc::new(master_keys);
        let credentials =
            store.as_ref().map(|s| Arc::new(TenantCredentials::new(s.admin.clone(), master_keys.clone())));
        let auth = Authenticator::new(admin_key.expose_secret(), store.as_ref().map(|s| s.auth.clone()));
        let (sink, writer) = match &store {
            Some(s) => {
                let (sink, writer) = usage_sink(s.usage.clone(), SinkConfig::default());
                (Some(Arc::new(sink) as Arc<dyn UsageSink>), Some(writer))
            }
            None => (None, None),
        };
        let (notifier, alert_worker) = AlertNotifier::new(AlertSettings::from_config(&config.budgets));
        let (enforcer, settle_worker) = Enforcer::new(
            limiter(config)?,
            &config.limits,
            &config.budgets,
            Some(notifier),
            Arc::new(SystemClock),
        );
        let pricer = Arc::new(Pricer::new(config.prices.clone()));
        if let Some(s) = &config.cache.semantic {
            let missing = if s.backend == SemanticBackend::Postgres && semantic.store.is_none() {
                Some(("cache.semantic.backend", "the pgvector store was not opened"))
            } else if matches!(s.embedding, EmbeddingSource::Local(_)) && semantic.local_embedder.is_none() {
                Some(("cache.semantic.embedding.local", "the local embedding model was not loaded"))
            } else {
                None
            };
            if let Some((path, message)) = missing {
                return Err(ConfigError {
                    issues: vec![tollgate_core::config::ConfigIssue {
                        path: path.into(),
                        message: message.into(),
                    }],
                });
            }
        }
        let semantic_store = semantic.store.or_else(|| memory_semantic_store(config));
        let (cache, cache_writer) = ResponseCache::new(
            semantic.exact.map_or_else(|| cache_store(config), Ok)?,
            semantic_store,
            config.cache.clone(),
        );
        let mut gateway = Gateway::new(registry, credentials, sink)
            .with_enforcer(enforcer)
            .with_pricer(pricer)
            .with_routing(config.routing.clone())
            .with_cache(Arc::new(cache));
        if let Some(embedder) = semantic.local_embedder {
            gateway = gateway.with_local_embedder(embedder);
        }
        Ok(Self(Arc::new(SharedState {
            gateway: Arc::new(gateway),
            usage_writer: parking_lot::Mutex::new(writer),
            settle_worker: parking_lot::Mutex::new(Some(settle_worker)),
            cache_writer: parking_lot::Mutex::new(Some(cache_writer)),
            alert_worker: parking_lot::Mutex::new(Some(alert_worker)),
            auth: Arc::new(auth),
            store,
            master_keys,
            providers: Arc::new(config.providers.keys().cloned().collect()),
            metrics: crate::prometheus::handle(),
            max_body_bytes: config.server.max_body_bytes,
            retention_days: config.usage.retention_days,
            health_check_interval: config.routing.health_check_interval,
            in_flight: Arc::new(Semaphore::new(config.server.max_concurrency)),
        })))
    }

    /// Starts the background work the state needs, on `tasks`, until `shutdown` fires:
    /// applying the store's change feed to the caches, and writing keys' last-used times (a
    /// final flush happens on shutdown).
    pub fn spawn_background(&self, tasks: &TaskTracker, shutdown: CancellationToken) {
        if let Some(writer) = self.usage_writer.lock().take() {
            tasks.spawn(writer.run(shutdown.clone(), USAGE_DRAIN_DEADLINE));
        }
        if let Some(worker) = self.settle_worker.lock().take() {
            tasks.spawn(worker.run(shutdown.clone()));
        }
        if let Some(writer) = self.cache_writer.lock().take() {
            tasks.spawn(writer.run(shutdown.clone()));
        }
        if let Some(worker) = self.alert_worker.lock().take() {
            tasks.spawn(worker.run(shutdown.clone()));
        }
        if let Some(every) = self.health_check_interval {
            tasks.spawn(tollgate_core::routing::checks::run(self.gateway.clone(), every, shutdown.clone()));
        }
        let Some(store) = &self.store else { return };
        tasks.spawn(tollgate_core::retention::run(
            store.usage.clone(),
            self.retention_days,
            tollgate_core::retention::RETENTION_EVERY,
            shutdown.clone(),
        ));
        let mut changes = store.changes.subscribe();
        let (auth, gateway, stop) = (self.auth.clone(), self.gateway.clone(), shutdown.clone());
        let (admin, purges) = (store.admin.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    event = changes.next() => match event {
                        Some(event) => {
                            auth.apply(event);
                            gateway.apply(event);
                            // A deleted tenant's cached answers go (off this loop: a Redis purge
                            // walks keys).
                            if let (ChangeEvent::Changed(Change::Tenant(t)), Some(cache)) =
                                (event, gateway.response_cache())
                            {
                                let (cache, admin) = (cache.clone(), admin.clone());
                                purges.spawn(async move { cache.forget_if_deleted(&*admin, t).await });
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        let auth = self.auth.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => auth.flush_usage().await,
                }
            }
            auth.flush_usage().await;
        });
    }
}

/// The configured limiter: in memory (one node), or Redis (every node) behind the configured
/// failure policy.
fn limiter(config: &Config) -> Result<Arc<dyn RateLimiter>, ConfigError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(match &config.limits.backend {
        LimiterBackend::Memory => Arc::new(MemoryRateLimiter::new(clock)),
        LimiterBackend::Redis { url } => {
            let settings = tollgate_redis::RedisLimiterConfig {
                timeout: config.limits.timeout,
                ..tollgate_redis::RedisLimiterConfig::default()
            };
            let redis =
                tollgate_redis::RedisRateLimiter::new(url.expose_secret(), clock, settings).map_err(|e| {
                    ConfigError {
                        issues: vec![tollgate_core::config::ConfigIssue {
                            path: "limits.redis_url".to_owned(),
                            message: e.to_string(),
                        }],
                    }
                })?;
            Arc::new(PolicyRateLimiter::new(Arc::new(redis), config.limits.on_backend_failure))
        }
    })
}

/// The configured response-cache store: in process (one node) or Redis (every node).
/// The response cache's stores and in-process embedding model, when the caller opened them.
#[derive(Default)]
pub struct CacheParts {
    /// The exact cache's store; absent: the configured backend without persistence.
    pub exact: Option<Arc<dyn CacheStore>>,
    /// Absent: an in-process store without persistence, if `cache.semantic` uses the memory
    /// backend.
    pub store: Option<Arc<dyn SemanticStore>>,
    /// Required when `cache.semantic.embedding` is `local`.
    pub local_embedder: Option<Arc<dyn EmbedPrompt>>,
}

/// An in-process semantic store for a `memory` backend (no journal).
pub fn memory_semantic_store(config: &Config) -> Option<Arc<dyn SemanticStore>> {
    match config.cache.semantic.as_ref()?.backend {
        SemanticBackend::Memory { max_bytes, hnsw_threshold } => {
            let params = IndexParams { hnsw_threshold, ..IndexParams::default() };
            Some(Arc::new(MemorySemanticStore::new(params, max_bytes)))
        }
        SemanticBackend::Postgres => None,
    }
}

fn cache_store(config: &Config) -> Result<Arc<dyn CacheStore>, ConfigError> {
    Ok(match &config.cache.backend {
        CacheBackend::Memory { max_bytes } => Arc::new(MemoryCacheStore::new(*max_bytes)),
        CacheBackend::Redis { url, timeout } => {
            let settings = tollgate_redis::RedisCacheConfig {
                timeout: *timeout,
                ..tollgate_redis::RedisCacheConfig::default()
            };
            let store = tollgate_redis::RedisCacheStore::new(url.expose_secret(), settings).map_err(|e| {
                ConfigError {
                    issues: vec![tollgate_core::config::ConfigIssue {
                        path: "cache.redis_url".to_owned(),
                        message: e.to_string(),
                    }],
                }
            })?;
            Arc::new(store)
        }
    })
}

/// How long shutdown waits for queued usage records to be written.
const USAGE_DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often keys' last-used times are written.
const USAGE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Builds the app. Layers, outermost first (each sees what the ones inside it return):
///
/// 1. `observe::request_id`: takes or makes `x-request-id`, inserts the [`observe::RequestId`]
///    extension, counts requests in flight, logs the `Arc<GatewayError>` a response carries
///    (once), and echoes the id. Outermost, so every response below gets an id.
/// 2. `CatchPanicLayer`: a panic becomes a 500 in OpenAI's error shape instead of a dropped
///    connection (no code path should panic; this is the last line).
/// 3. `SetSensitiveRequestHeadersLayer`: `authorization`, `x-api-key` and `api-key` are marked
///    sensitive so no debug output shows them.
/// 4. `shed_load`: over `server.max_concurrency` requests in flight → 503 with `Retry-After`.
/// 5. `auth::require_key`: everything but [`auth::PUBLIC_ROUTES`] needs the key → 401.
///
/// Body size limits are enforced by the [`crate::extract::JsonBody`] extractor (413 in the
/// error shape), so axum's default limit is disabled.
pub fn build_app(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{model}", get(openai::get_model))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(middleware::from_fn_with_state(state.clone(), shed_load))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("api-key"),
        ]))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError(GatewayError::internal(
                "The gateway hit an internal error; the request id is in x-request-id.",
            ))
            .into_response()
        }))
        .layer(middleware::from_fn(observe::request_id))
        .with_state(state)
}

async fn shed_load(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        let err = GatewayError::new(
            ErrorKind::Overloaded,
            "The gateway is at its concurrency limit; retry shortly.",
        )
        .with_retry_after(Some(std::time::Duration::from_secs(1)));
        return ApiError(err).into_response();
    };
    // The permit is held until the response head is returned; a stream's body outlives it,
    // which bounds request admission, not open streams.
    next.run(req).await
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    // The config is loaded and every adapter built before the listener opens; what can still
    // fail is the store.
    let store = match &state.store {
        None => "none",
        Some(store) => match store.auth.ping().await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the store is unreachable");
                let body = serde_json::json!({"status": "unavailable", "store": "unreachable"});
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            }
        },
    };
    let models = state.gateway.models().len();
    axum::Json(serde_json::json!({"status": "ready", "store": store, "models": models})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(cache) = state.gateway.response_cache() {
        cache.update_gauges().await;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError(GatewayError::new(
        ErrorKind::NotFound,
        format!("No route for {} {}; see the API reference in docs/api.md.", req.method(), req.uri().path()),
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    let mut resp = ApiError(GatewayError::invalid_request(format!(
        "Method {} is not allowed on {}.",
        req.method(),
        req.uri().path()
    )))
    .into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}
