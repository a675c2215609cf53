//! One request, top to bottom. Each public entry point reads as the pipeline itself:
//!
//! ```text
//! admit (validate, find the alias) → cache (chat: answer from the response cache, or note
//!   where to store the answer) → limit (reserve rate limits and budgets)
//!   → call_with_fallback (route.rs: the alias's deployments in strategy order, then its
//!     fallback aliases; per attempt the breaker, the deployment's own limits and the
//!     deadline; retries with backoff after a whole round failed)
//!   → settle (metrics, cost, usage record, limit corrections, the answer into the cache;
//!     streams settle when they end or are dropped)
//! ```
//!
//! A cache hit takes no limits and calls no upstream: it is metered with zero cost and the
//! stored answer's original cost as saved.
//!
//! Streams are peeked before the caller sends response headers: a failure before the first
//! chunk can still fall back to the next deployment; after it, it cannot.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tollgate_types::ports::cache::CachedResponse;
use tollgate_types::ports::store::{Change, ChangeEvent};
use tollgate_types::ports::usage::{TokenSource, UsageSink};
use tollgate_types::ports::{ChunkStream, CompletionStream, ProviderError, ProviderErrorKind};
use tollgate_types::{
    ChatChunk, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, EmbeddingsRequest,
    EmbeddingsResponse, ErrorKind, GatewayError, JsonMap, Usage,
};

use crate::auth::Principal;
use crate::byok::{CredentialSet, TenantCredentials};
use crate::cache::service::{Lookup, PendingWrite};
use crate::cache::{CacheRequest, CacheStatus, EmbedPrompt, ResponseCache};
use crate::limits::{Enforcer, Estimate, RateLimitHeaders};
use crate::metering::{Pricer, TokenizerFamily, count_text_tokens};
use crate::metrics;
use crate::registry::{Deployment, ModelRoute, Registry};

mod cache_embed;
mod estimate;
mod meter;
mod route;
mod validate;

pub use crate::routing::BREAKER_TRANSITIONS;
pub use route::{ATTEMPTS, DEPLOYMENT_LATENCY, FALLBACKS, RETRIES, RouteControls};

use estimate::Demand;
use meter::{Answer, Meter};

/// Per-request facts the pipeline needs from the ingress.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    /// Who is calling (from authentication).
    pub principal: Principal,
    /// The client's routing headers.
    pub controls: RouteControls,
    /// The client's cache headers (`x-tollgate-cache`, `Cache-Control`).
    pub cache: CacheRequest,
}

impl RequestCtx {
    pub fn new(request_id: String, principal: Principal) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            principal,
            controls: RouteControls::default(),
            cache: CacheRequest::default(),
        }
    }

    #[must_use]
    pub fn with_cache(mut self, cache: CacheRequest) -> Self {
        self.cache = cache;
        self
    }

    #[must_use]
    pub fn with_controls(mut self, controls: RouteControls) -> Self {
        self.controls = controls;
        self
    }
}

/// Who an internal call is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The client's own request.
    Client,
    /// The response cache, embedding the client's prompt.
    Cache,
}

/// Which API a request came in on (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// An answer and the deployment that produced it (for the response headers).
pub struct Served<T> {
    pub value: T,
    pub deployment: Arc<Deployment>,
    /// The alias that served it: the requested one, or a fallback.
    pub route: Arc<ModelRoute>,
    /// Upstream attempts made, this one included.
    pub attempts: u32,
    /// A hedged second call was started on another deployment (`hedge_after`).
    pub hedged: bool,
    /// Counts the answer in its deployment's in-flight requests until it is dropped.
    pub in_flight: Option<crate::routing::InFlight>,
    /// The caller's tightest request and token limits (`x-ratelimit-*`).
    pub rate_limits: RateLimitHeaders,
    /// What the response cache did (`None`: the endpoint is not cached).
    pub cache: Option<CacheStatus>,
}

/// What `chat` returns: a whole completion, or a stream whose first chunk has already arrived.
pub enum ChatOutcome {
    Json(Served<ChatResponse>),
    /// Boxed: the stream carries the request's metering state, much larger than a response.
    Stream(Served<Box<MeteredStream>>),
    /// Answered from the response cache.
    Cached(CachedAnswer),
}

/// An answer from the response cache, for a JSON or a streaming client.
pub struct CachedAnswer {
    pub entry: Arc<CachedResponse>,
    /// Set for a semantic hit: how similar the stored prompt was (`x-tollgate-cache-similarity`).
    pub similarity: Option<f32>,
    /// The alias the client asked for.
    pub alias: String,
    /// The client asked for a stream: send [`CachedAnswer::chunks`] as SSE.
    pub stream: bool,
    wants_usage: bool,
}

impl CachedAnswer {
    /// The stored answer replayed as stream chunks; the usage chunk only for a client that asked
    /// for it (`stream_options.include_usage`), as with a live stream.
    pub fn chunks(&self) -> Vec<ChatChunk> {
        let mut chunks = crate::cache::replay(&self.entry.response);
        if !self.wants_usage {
            chunks.retain(|c| c.usage.is_none());
        }
        chunks
    }
}

/// What `completions` returns.
pub enum CompletionOutcome {
    Json(Served<CompletionResponse>),
    Stream(Served<CompletionStream>),
}

/// An alias offered by the gateway.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub alias: String,
    pub description: Option<String>,
}

/// The gateway: config-derived state shared by all requests.
pub struct Gateway {
    registry: Registry,
    /// Tenants' own provider credentials (absent when there is no store).
    credentials: Option<Arc<TenantCredentials>>,
    /// Where each request's usage record goes (absent when there is no store).
    usage: Option<Arc<dyn UsageSink>>,
    /// Rate limits and budgets (absent: nothing is limited).
    enforcer: Option<Arc<Enforcer>>,
    /// Prices requests for usage records and budgets (absent: no cost is recorded).
    pricer: Option<Arc<Pricer>>,
    /// Attempts, backoff and deadline defaults of every alias.
    routing: crate::config::RoutingConfig,
    /// The response cache (absent: chat requests are never cached).
    cache: Option<Arc<ResponseCache>>,
    /// The in-process embedding model of the semantic cache, when it is configured to use one
    /// (otherwise prompts are embedded through the configured alias).
    local_embedder: Option<Arc<dyn EmbedPrompt>>,
}

impl Gateway {
    pub fn new(
        registry: Registry,
        credentials: Option<Arc<TenantCredentials>>,
        usage: Option<Arc<dyn UsageSink>>,
    ) -> Self {
        Self {
            registry,
            credentials,
            usage,
            enforcer: None,
            pricer: None,
            routing: crate::config::RoutingConfig::default(),
            cache: None,
            local_embedder: None,
        }
    }

    /// Caches chat answers in `cache`.
    pub fn with_cache(mut self, cache: Arc<ResponseCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Embeds the semantic cache's prompts with `embedder` (an in-process model) instead of
    /// the configured alias.
    pub fn with_local_embedder(mut self, embedder: Arc<dyn EmbedPrompt>) -> Self {
        self.local_embedder = Some(embedder);
        self
    }

    /// The response cache, if configured (for the admin API's purge and stats).
    pub fn response_cache(&self) -> Option<&Arc<ResponseCache>> {
        self.cache.as_ref()
    }

    /// Uses `routing` for attempts, backoff and deadlines.
    pub fn with_routing(mut self, routing: crate::config::RoutingConfig) -> Self {
        self.routing = routing;
        self
    }

    /// Enforces rate limits and budgets with `enforcer`.
    pub fn with_enforcer(mut self, enforcer: Arc<Enforcer>) -> Self {
        self.enforcer = Some(enforcer);
        self
    }

    /// Prices requests with `pricer`.
    pub fn with_pricer(mut self, pricer: Arc<Pricer>) -> Self {
        self.pricer = Some(pricer);
        self
    }

    fn meter(
        &self,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        model: &str,
        user: Option<&str>,
        metadata: Option<&JsonMap>,
    ) -> Meter {
        Meter::new(self.usage.clone(), self.pricer.clone(), ctx, endpoint, model, user, metadata)
    }

    /// Drops state a change makes stale (tenants' credentials and the adapters built on them).
    pub fn apply(&self, event: ChangeEvent) {
        if let Some(c) = &self.credentials {
            c.apply(event);
        }
        if matches!(
            event,
            ChangeEvent::Resync | ChangeEvent::Changed(Change::Credentials(_) | Change::Tenant(_))
        ) {
            self.registry.forget_tenant_adapters();
        }
    }

    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, ctx: &RequestCtx, req: ChatRequest) -> Result<ChatOutcome, GatewayError> {
        let mut meter =
            self.meter(ctx, Endpoint::Chat, &req.model, req.user.as_deref(), req.metadata.as_ref());
        let route = self.admit(ctx, &meter, &req.model, || validate::chat(&req))?;
        let (cache_status, write) = match self.look_up(ctx, route, &req).await {
            Some(Lookup::Hit { entry, similarity }) => {
                meter.cached(&route.alias, &entry, similarity.is_some());
                return Ok(ChatOutcome::Cached(CachedAnswer {
                    entry,
                    similarity,
                    alias: route.alias.clone(),
                    stream: req.stream,
                    wants_usage: req.wants_stream_usage(),
                }));
            }
            Some(Lookup::Pass { status, write }) => {
                meter.note_cache(status);
                (Some(status), write)
            }
            None => (None, None),
        };
        let (rate_limits, prompt) =
            self.limit(ctx, &mut meter, route, |family| estimate::chat(&req, family)).await?;
        let call = Call { endpoint: Endpoint::Chat, streaming: req.stream, prompt_tokens: prompt };
        // Only the requested alias's own answers are stored: a fallback's answer stands in for
        // an outage, not for what the alias would have said.
        let write = |served: &ModelRoute| write.filter(|_| served.alias == route.alias);
        if req.stream {
            let wants_usage = req.wants_stream_usage();
            let result = self
                .call_with_fallback(ctx, route, call, meter.charge(), |adapter, call| {
                    let req = &req;
                    async move { open_stream(adapter.chat_stream(req, &call).await?, adapter.kind()).await }
                })
                .await;
            return match result {
                Ok(Served {
                    value: opened, deployment, route: served, attempts, hedged, in_flight, ..
                }) => {
                    meter.note_hedged(hedged);
                    let metered = Box::new(MeteredStream::new(
                        meter,
                        &served,
                        deployment.clone(),
                        opened,
                        StreamOptions { wants_usage, in_flight, attempts, cache: write(&served) },
                    ));
                    Ok(ChatOutcome::Stream(Served {
                        value: metered,
                        deployment,
                        route: served,
                        attempts,
                        hedged,
                        in_flight: None,
                        rate_limits,
                        cache: cache_status,
                    }))
                }
                Err(e) => Err(failed(&meter, route, e)),
            };
        }
        let result = self
            .call_with_fallback(ctx, route, call, meter.charge(), |adapter, call| {
                let req = &req;
                async move { adapter.chat(req, &call).await }
            })
            .await;
        match result {
            Ok(served) => {
                meter.note_hedged(served.hedged);
                let usage = served.value.usage;
                let cost = meter.answered(
                    &served.route.alias,
                    &served.deployment,
                    &Answer::ok(usage.as_ref(), served.attempts),
                );
                if let Some(w) = write(&served.route) {
                    w.store(
                        served.value.clone(),
                        &served.deployment,
                        usage.unwrap_or_default(),
                        cost.unwrap_or(0),
                    );
                }
                Ok(ChatOutcome::Json(Served { rate_limits, cache: cache_status, ..served }))
            }
            Err(e) => Err(failed(&meter, route, e)),
        }
    }

    /// `POST /v1/embeddings`.
    pub async fn embeddings(
        &self,
        ctx: &RequestCtx,
        req: EmbeddingsRequest,
    ) -> Result<Served<EmbeddingsResponse>, GatewayError> {
        self.embed(ctx, req, Caller::Client).await
    }

    /// An embeddings call for the client, or for the semantic cache on the client's behalf:
    /// the cache's alias is the operator's choice, so the key's model allow-list does not
    /// apply to it; everything else (limits, credentials, metering) does.
    async fn embed(
        &self,
        ctx: &RequestCtx,
        req: EmbeddingsRequest,
        caller: Caller,
    ) -> Result<Served<EmbeddingsResponse>, GatewayError> {
        let mut meter = self.meter(ctx, Endpoint::Embeddings, &req.model, req.user.as_deref(), None);
        let route = match caller {
            Caller::Client => self.admit(ctx, &meter, &req.model, || validate::embeddings(&req))?,
            // Configuration checks that the alias exists.
            Caller::Cache => self.registry.route(&req.model).ok_or_else(|| {
                GatewayError::new(
                    tollgate_types::ErrorKind::ModelNotFound,
                    format!("the semantic cache's embedding alias `{}` does not exist", req.model),
                )
            })?,
        };
        let (rate_limits, prompt) =
            self.limit(ctx, &mut meter, route, |family| estimate::embeddings(&req, family)).await?;
        let call = Call { endpoint: Endpoint::Embeddings, streaming: false, prompt_tokens: prompt };
        let result = self
            .call_with_fallback(ctx, route, call, meter.charge(), |adapter, call| {
                let req = &req;
                async move { adapter.embeddings(req, &call).await }
            })
            .await;
        match result {
            Ok(served) => {
                let u = served.value.usage;
                let usage = Usage::new(u.prompt_tokens, 0, None);
                meter.note_hedged(served.hedged);
                meter.answered(
                    &served.route.alias,
                    &served.deployment,
                    &Answer::ok(Some(&usage), served.attempts),
                );
                Ok(Served { rate_limits, ..served })
            }
            Err(e) => Err(failed(&meter, route, e)),
        }
    }

    /// `POST /v1/completions` (legacy; OpenAI-compatible upstreams only).
    pub async fn completions(
        &self,
        ctx: &RequestCtx,
        req: CompletionRequest,
    ) -> Result<CompletionOutcome, GatewayError> {
        let mut meter = self.meter(ctx, Endpoint::Completions, &req.model, None, None);
        let route = self.admit(ctx, &meter, &req.model, || validate::completions(&req))?;
        let (rate_limits, prompt) =
            self.limit(ctx, &mut meter, route, |family| estimate::completions(&req, family)).await?;
        let call = Call { endpoint: Endpoint::Completions, streaming: req.stream, prompt_tokens: prompt };
        let outcome = if req.stream {
            self.call_with_fallback(ctx, route, call, meter.charge(), |adapter, call| {
                let req = &req;
                async move { adapter.completions_stream(req, &call).await }
            })
            .await
            .map(|s| {
                // Legacy completion streams are passed through unmetered for tokens.
                meter.note_hedged(s.hedged);
                meter.answered(&s.route.alias, &s.deployment, &Answer::ok(None, s.attempts));
                CompletionOutcome::Stream(Served { rate_limits: rate_limits.clone(), ..s })
            })
        } else {
            self.call_with_fallback(ctx, route, call, meter.charge(), |adapter, call| {
                let req = &req;
                async move { adapter.completions(req, &call).await }
            })
            .await
            .map(|s| {
                meter.note_hedged(s.hedged);
                meter.answered(
                    &s.route.alias,
                    &s.deployment,
                    &Answer::ok(s.value.usage.as_ref(), s.attempts),
                );
                CompletionOutcome::Json(Served { rate_limits: rate_limits.clone(), ..s })
            })
        };
        outcome.map_err(|e| failed(&meter, route, e))
    }

    /// Every alias with its deployments (the admin view of routing and health).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.registry.routes()
    }

    /// The configured aliases, for `GET /v1/models`.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.registry
            .routes()
            .map(|r| ModelInfo { alias: r.alias.clone(), description: r.description.clone() })
            .collect()
    }

    // === stages ===

    /// Validates the request, checks the key may call the model, and finds the alias;
    /// rejections are metered here.
    fn admit(
        &self,
        ctx: &RequestCtx,
        meter: &Meter,
        model: &str,
        validate: impl FnOnce() -> Result<(), GatewayError>,
    ) -> Result<&Arc<ModelRoute>, GatewayError> {
        let result = validate().and_then(|()| ctx.principal.check_model(model)).and_then(|()| {
            self.registry.route(model).ok_or_else(|| {
                GatewayError::new(
                    tollgate_types::ErrorKind::ModelNotFound,
                    format!("The model `{model}` does not exist on this gateway; GET /v1/models lists the models you can use."),
                )
            })
        });
        if let Err(e) = &result {
            meter.rejected(e);
        }
        result
    }

    /// The `cache` stage of a chat request; `None` when no cache is configured.
    async fn look_up(&self, ctx: &RequestCtx, route: &ModelRoute, req: &ChatRequest) -> Option<Lookup> {
        let cache = self.cache.as_ref()?;
        let by_alias = cache
            .semantic_config()
            .and_then(|s| match &s.embedding {
                crate::config::EmbeddingSource::Alias(alias) => self.registry.route(alias),
                crate::config::EmbeddingSource::Local(_) => None,
            })
            .map(|route| cache_embed::AliasEmbedder::new(self, ctx, route));
        let embedder: Option<&dyn EmbedPrompt> = match (&self.local_embedder, &by_alias) {
            (Some(local), _) => Some(local.as_ref()),
            (None, Some(alias)) => Some(alias),
            (None, None) => None,
        };
        Some(cache.look_up(&ctx.principal, &ctx.cache, route, req, embedder).await)
    }

    /// Reserves what the request may take against every limit it falls under and hands the
    /// charge to the meter; a refusal is metered and returned (429 naming the limit). Also
    /// returns the prompt's tokens when they were counted (for limits, or because a deployment
    /// of the alias declares a context window).
    async fn limit(
        &self,
        ctx: &RequestCtx,
        meter: &mut Meter,
        route: &ModelRoute,
        demand: impl FnOnce(TokenizerFamily) -> Demand,
    ) -> Result<(RateLimitHeaders, Option<u64>), GatewayError> {
        let windows = route.deployments.iter().any(|d| d.routing.context_window.is_some());
        let Some(enforcer) = &self.enforcer else {
            return Ok((
                RateLimitHeaders::default(),
                windows.then(|| demand(family_of(route)).prompt_tokens),
            ));
        };
        let plan = enforcer.plan(&ctx.principal, &route.alias);
        let deployment_limits = route.deployments.iter().any(|d| !d.limit_plan.is_empty());
        if plan.is_empty() && !deployment_limits {
            return Ok((
                RateLimitHeaders::default(),
                windows.then(|| demand(family_of(route)).prompt_tokens),
            ));
        }
        let deployment_tokens = route.deployments.iter().any(|d| d.limit_plan.needs_tokens());
        let (estimate, prompt) = if plan.needs_tokens() || plan.needs_cost() || deployment_tokens || windows {
            let d = demand(family_of(route));
            (self.estimate(ctx, enforcer, route, d), Some(d.prompt_tokens))
        } else {
            (Estimate::default(), None)
        };
        let charge = match enforcer.admit(&plan, estimate).await {
            Ok(c) => c,
            Err(e) => {
                meter.rejected(&e);
                return Err(e);
            }
        };
        let headers = charge.headers.clone();
        meter.attach(charge);
        Ok((headers, prompt))
    }

    /// Tokens (input + requested maximum output) and worst-case cost (input + maximum output at
    /// the dearest of the alias's deployments).
    fn estimate(&self, ctx: &RequestCtx, enforcer: &Enforcer, route: &ModelRoute, d: Demand) -> Estimate {
        let tokens = d.prompt_tokens.saturating_add(d.max_output.unwrap_or(0));
        let Some(pricer) = &self.pricer else { return Estimate { tokens, cost: 0 } };
        let tenant = match &ctx.principal {
            Principal::Key(k) => Some(&*k.pricing),
            Principal::SuperAdmin => None,
        };
        let max_output = d.max_output.unwrap_or_else(|| enforcer.default_max_output_tokens());
        let now = time::OffsetDateTime::now_utc();
        let cost = route
            .deployments
            .iter()
            .map(|dep| {
                pricer.worst_case(tenant, dep.kind, &dep.upstream_model, d.prompt_tokens, max_output, now)
            })
            .max()
            .unwrap_or(0);
        Estimate { tokens, cost }
    }

    /// For a tenant key: the tenant's credentials and whether it forbids the gateway's keys.
    async fn tenant_credentials(
        &self,
        principal: &Principal,
    ) -> Result<Option<(CredentialSet, bool)>, GatewayError> {
        match (principal, &self.credentials) {
            (Principal::Key(k), Some(c)) => Ok(Some((c.for_tenant(k.tenant_id).await?, k.policy.byok_only))),
            (Principal::Key(k), None) if k.policy.byok_only => Ok(Some((CredentialSet::default(), true))),
            _ => Ok(None),
        }
    }
}

/// The tokenizer of an alias: its first deployment's.
fn family_of(route: &ModelRoute) -> TokenizerFamily {
    route
        .deployments
        .first()
        .map_or(TokenizerFamily::Other, |d| TokenizerFamily::for_model(&d.upstream_model))
}

/// What kind of call the route stage makes.
#[derive(Debug, Clone, Copy)]
struct Call {
    endpoint: Endpoint,
    /// Answers are streams (their latency sample is the time to the first chunk).
    streaming: bool,
    /// The prompt's tokens, when counted (context-window routing).
    prompt_tokens: Option<u64>,
}

/// Settles a request every deployment of `route` failed; returns the error for the client.
fn failed(meter: &Meter, route: &ModelRoute, e: GatewayError) -> GatewayError {
    meter.failed(&route.alias, &e);
    e
}

/// Waits for a stream's first chunk, so a failure before it counts as a failed attempt.
async fn open_stream(
    mut stream: ChunkStream,
    provider: &'static str,
) -> Result<(ChatChunk, ChunkStream), ProviderError> {
    match stream.next().await {
        Some(Ok(first)) => Ok((first, stream)),
        Some(Err(e)) => Err(e),
        None => Err(ProviderError::new(
            provider,
            ProviderErrorKind::InvalidResponse,
            "the upstream sent an empty stream",
        )),
    }
}

// === MeteredStream ===

/// A client's chat stream: replays the peeked first chunk, hides the usage chunk from clients
/// that did not ask for it, and settles the request when the stream ends, fails, or is dropped
/// (a client that disconnects is still metered, its tokens marked `partial`).
pub struct MeteredStream {
    first: Option<ChatChunk>,
    inner: ChunkStream,
    wants_usage: bool,
    usage: Option<Usage>,
    ttft: Option<std::time::Duration>,
    /// How the stream ended; `None` while it runs (a drop then means the client left).
    ended: Option<StreamEnd>,
    settled: bool,
    meter: Meter,
    alias: String,
    deployment: Arc<Deployment>,
    /// Counts the stream in its deployment's in-flight requests until it ends.
    in_flight: Option<crate::routing::InFlight>,
    /// Upstream attempts the request made, this stream's included (for the usage record).
    attempts: u32,
    /// The generated text (content and tool-call arguments), kept only while usage is being
    /// recorded, to count what a client that leaves mid-stream is billed for. Counting happens
    /// only then, so complete streams pay nothing for it.
    generated: Option<String>,
    /// The chunks so far, kept when the answer is to be stored in the response cache once the
    /// stream completes.
    capture: Option<Capture>,
}

/// How a [`MeteredStream`] treats its chunks.
struct StreamOptions {
    /// Pass the usage chunk on to the client.
    wants_usage: bool,
    in_flight: Option<crate::routing::InFlight>,
    attempts: u32,
    /// Store the complete answer here.
    cache: Option<PendingWrite>,
}

/// A stream's chunks kept for the response cache.
struct Capture {
    write: PendingWrite,
    chunks: Vec<ChatChunk>,
    /// Generated bytes so far; past [`MAX_GENERATED_BYTES`] the answer is not stored.
    bytes: usize,
}

/// Generated text kept per stream for partial billing; beyond it the count is a lower bound.
const MAX_GENERATED_BYTES: usize = 4 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    Complete,
    /// The upstream failed after the first chunk: the client saw a broken answer.
    Failed,
}

impl MeteredStream {
    fn new(
        meter: Meter,
        route: &ModelRoute,
        deployment: Arc<Deployment>,
        (first, inner): (ChatChunk, ChunkStream),
        StreamOptions { wants_usage, in_flight, attempts, cache }: StreamOptions,
    ) -> Self {
        Self {
            in_flight,
            attempts,
            capture: cache.map(|write| Capture { write, chunks: Vec::new(), bytes: 0 }),
            first: Some(first),
            inner,
            wants_usage,
            usage: None,
            ttft: None,
            ended: None,
            settled: false,
            generated: meter.is_recording().then(String::new),
            meter,
            alias: route.alias.clone(),
            deployment,
        }
    }

    /// Looks at one chunk on its way out; returns `None` if the client must not see it.
    fn observe(&mut self, mut chunk: ChatChunk) -> Option<ChatChunk> {
        if let Some(capture) = &mut self.capture {
            capture.bytes += chunk
                .choices
                .iter()
                .map(|c| {
                    c.delta.content.as_ref().map_or(0, String::len)
                        + c.delta
                            .tool_calls
                            .iter()
                            .flatten()
                            .map(|t| {
                                t.function.as_ref().and_then(|f| f.arguments.as_ref()).map_or(0, String::len)
                            })
                            .sum::<usize>()
                })
                .sum::<usize>();
            if capture.bytes > MAX_GENERATED_BYTES {
                self.capture = None;
            } else {
                capture.chunks.push(chunk.clone());
            }
        }
        if self.ttft.is_none()
            && chunk.choices.iter().any(|c| c.delta.content.is_some() || c.delta.tool_calls.is_some())
        {
            self.ttft = Some(self.meter.started().elapsed());
        }
        if let Some(text) = &mut self.generated
            && text.len() < MAX_GENERATED_BYTES
        {
            for c in &chunk.choices {
                text.push_str(c.delta.content.as_deref().unwrap_or_default());
                for call in c.delta.tool_calls.iter().flatten() {
                    if let Some(f) = &call.function {
                        text.push_str(f.name.as_deref().unwrap_or_default());
                        text.push_str(f.arguments.as_deref().unwrap_or_default());
                    }
                }
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
            if !self.wants_usage {
                if chunk.choices.is_empty() {
                    return None;
                }
                chunk.usage = None;
            }
        }
        Some(chunk)
    }

    fn settle(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.in_flight = None;
        if self.ended == Some(StreamEnd::Failed) {
            // A stream cut by the upstream is the deployment's failure, after its success at
            // the first chunk: the breaker sees both.
            let change =
                self.deployment.health.record(Instant::now(), crate::routing::Outcome::Failure, false);
            crate::routing::note_breaker(&self.deployment, change);
        }
        let (status, error_code, source) = match (self.ended, self.usage.is_some()) {
            (Some(StreamEnd::Complete), true) => (200, None, TokenSource::Provider),
            (Some(StreamEnd::Complete), false) => (200, None, TokenSource::None),
            // Headers (200) were sent before the failure; the record says what the client got.
            (Some(StreamEnd::Failed), _) => {
                (502, Some(ErrorKind::UpstreamUnavailable.code()), TokenSource::Partial)
            }
            (None, _) => (200, Some("client_disconnected"), TokenSource::Partial),
        };
        // Without the provider's usage, a cut stream is billed for what it generated, counted.
        let counted = match (&self.usage, source, &self.generated) {
            (None, TokenSource::Partial, Some(text)) => {
                let family = TokenizerFamily::for_model(&self.deployment.upstream_model);
                Some(Usage::new(0, count_text_tokens(text, family), None))
            }
            _ => None,
        };
        let usage = self.usage.as_ref().or(counted.as_ref());
        let answer = Answer { status, error_code, usage, source, ttft: self.ttft, attempts: self.attempts };
        let cost = self.meter.answered(&self.alias, &self.deployment, &answer);
        // Only a stream that ran to its end is stored; `assemble` also refuses one whose
        // choices did not all finish.
        if let Some(capture) = self.capture.take()
            && self.ended == Some(StreamEnd::Complete)
        {
            match crate::cache::assemble(&capture.chunks) {
                Ok(response) => capture.write.store(
                    response,
                    &self.deployment,
                    self.usage.unwrap_or_default(),
                    cost.unwrap_or(0),
                ),
                Err(e) => tracing::debug!(error = %e, "a streamed answer was not stored in the cache"),
            }
        }
    }
}

impl Stream for MeteredStream {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take()
            && let Some(chunk) = this.observe(first)
        {
            return Poll::Ready(Some(Ok(chunk)));
        }
        loop {
            return match this.inner.poll_next_unpin(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = Some(StreamEnd::Complete);
                    this.settle();
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = Some(StreamEnd::Failed);
                    this.settle();
                    metrics::record_upstream_error(this.deployment.provider_kind, &e.kind);
                    Poll::Ready(Some(Err(GatewayError::from_provider(e, &this.deployment.provider))))
                }
                Poll::Ready(Some(Ok(chunk))) => match this.observe(chunk) {
                    Some(chunk) => Poll::Ready(Some(Ok(chunk))),
                    None => continue,
                },
            };
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        self.settle();
    }
}
