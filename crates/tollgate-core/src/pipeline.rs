//! One request, top to bottom. Each public entry point reads as the pipeline itself:
//!
//! ```text
//! admit (validate, find the alias) → route (its deployments, in order)
//!   → call_with_fallback (per attempt: deadline, classify, fall through on retryable errors)
//!   → settle (metrics: status, latency, tokens; streams settle when they end or are dropped)
//! ```
//!
//! Streams are peeked before the caller sends response headers: a failure before the first
//! chunk can still fall back to the next deployment; after it, it cannot.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tollgate_types::ports::store::{Change, ChangeEvent};
use tollgate_types::ports::{
    CallCtx, ChunkStream, CompletionStream, ProviderAdapter, ProviderError, ProviderErrorKind,
};
use tollgate_types::{
    Attempt, ChatChunk, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, EmbeddingsRequest,
    EmbeddingsResponse, ErrorKind, GatewayError, Usage,
};

use crate::auth::Principal;
use crate::byok::{CredentialSet, TenantCredentials};
use crate::metrics::{self, RequestLabels};
use crate::registry::{Deployment, ModelRoute, Registry};

mod validate;

/// Per-request facts the pipeline needs from the ingress.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    /// Who is calling (from authentication).
    pub principal: Principal,
}

impl RequestCtx {
    pub fn new(request_id: String, principal: Principal) -> Self {
        Self { request_id, started: Instant::now(), principal }
    }
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
}

/// What `chat` returns: a whole completion, or a stream whose first chunk has already arrived.
pub enum ChatOutcome {
    Json(Served<ChatResponse>),
    Stream(Served<MeteredStream>),
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
}

impl Gateway {
    pub fn new(registry: Registry, credentials: Option<Arc<TenantCredentials>>) -> Self {
        Self { registry, credentials }
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
        let route = self.admit(ctx, Endpoint::Chat, &req.model, || validate::chat(&req))?;
        if req.stream {
            let wants_usage = req.wants_stream_usage();
            let result = self
                .call_with_fallback(ctx, route, Endpoint::Chat, |adapter, call| {
                    let req = &req;
                    async move { open_stream(adapter.chat_stream(req, &call).await?, adapter.kind()).await }
                })
                .await;
            return match result {
                Ok(Served { value: (first, rest), deployment }) => {
                    let metered = MeteredStream::new(ctx, route, &deployment, first, rest, wants_usage);
                    Ok(ChatOutcome::Stream(Served { value: metered, deployment }))
                }
                Err(e) => Err(self.settle_error(ctx, route, Endpoint::Chat, e)),
            };
        }
        let result = self
            .call_with_fallback(ctx, route, Endpoint::Chat, |adapter, call| {
                let req = &req;
                async move { adapter.chat(req, &call).await }
            })
            .await;
        match result {
            Ok(served) => {
                settle(ctx, route, &served.deployment, Endpoint::Chat, served.value.usage.as_ref());
                Ok(ChatOutcome::Json(served))
            }
            Err(e) => Err(self.settle_error(ctx, route, Endpoint::Chat, e)),
        }
    }

    /// `POST /v1/embeddings`.
    pub async fn embeddings(
        &self,
        ctx: &RequestCtx,
        req: EmbeddingsRequest,
    ) -> Result<Served<EmbeddingsResponse>, GatewayError> {
        let route = self.admit(ctx, Endpoint::Embeddings, &req.model, || validate::embeddings(&req))?;
        let result = self
            .call_with_fallback(ctx, route, Endpoint::Embeddings, |adapter, call| {
                let req = &req;
                async move { adapter.embeddings(req, &call).await }
            })
            .await;
        match result {
            Ok(served) => {
                let u = served.value.usage;
                let usage = Usage::new(u.prompt_tokens, 0, None);
                settle(ctx, route, &served.deployment, Endpoint::Embeddings, Some(&usage));
                Ok(served)
            }
            Err(e) => Err(self.settle_error(ctx, route, Endpoint::Embeddings, e)),
        }
    }

    /// `POST /v1/completions` (legacy; OpenAI-compatible upstreams only).
    pub async fn completions(
        &self,
        ctx: &RequestCtx,
        req: CompletionRequest,
    ) -> Result<CompletionOutcome, GatewayError> {
        let route = self.admit(ctx, Endpoint::Completions, &req.model, || validate::completions(&req))?;
        let outcome = if req.stream {
            self.call_with_fallback(ctx, route, Endpoint::Completions, |adapter, call| {
                let req = &req;
                async move { adapter.completions_stream(req, &call).await }
            })
            .await
            .map(|s| {
                settle(ctx, route, &s.deployment, Endpoint::Completions, None);
                CompletionOutcome::Stream(s)
            })
        } else {
            self.call_with_fallback(ctx, route, Endpoint::Completions, |adapter, call| {
                let req = &req;
                async move { adapter.completions(req, &call).await }
            })
            .await
            .map(|s| {
                settle(ctx, route, &s.deployment, Endpoint::Completions, s.value.usage.as_ref());
                CompletionOutcome::Json(s)
            })
        };
        outcome.map_err(|e| self.settle_error(ctx, route, Endpoint::Completions, e))
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
        endpoint: Endpoint,
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
            let labels = RequestLabels { endpoint: endpoint.as_str(), model: "unknown", provider: "none" };
            metrics::record_request(labels, e.status(), ctx.started.elapsed());
        }
        result
    }

    /// Tries the route's deployments in order until one answers. A non-retryable error (the
    /// request itself is bad) ends the loop at once; every failure is kept as an [`Attempt`].
    async fn call_with_fallback<T, F, Fut>(
        &self,
        ctx: &RequestCtx,
        route: &ModelRoute,
        endpoint: Endpoint,
        call: F,
    ) -> Result<Served<T>, GatewayError>
    where
        F: Fn(Arc<dyn ProviderAdapter>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let tenant = self.tenant_credentials(&ctx.principal).await?;
        let mut attempts = Vec::new();
        let mut byok_missing = Vec::new();
        for deployment in &route.deployments {
            let adapter = match &tenant {
                None => deployment.adapter.clone(),
                Some((set, byok_only)) => match set.get(&deployment.provider) {
                    Some(credential) => self.registry.adapter_with(deployment, credential),
                    None if *byok_only => {
                        byok_missing.push(deployment.provider.as_str());
                        continue;
                    }
                    None => deployment.adapter.clone(),
                },
            };
            let call_ctx = CallCtx {
                upstream_model: deployment.upstream_model.clone(),
                request_id: ctx.request_id.clone(),
                first_byte_timeout: deployment.timeouts.first_byte,
                total_timeout: deployment.timeouts.total,
                include_usage: true,
            };
            match call(adapter, call_ctx).await {
                Ok(value) => return Ok(Served { value, deployment: deployment.clone() }),
                Err(error) => {
                    metrics::record_upstream_error(deployment.provider_kind, &error.kind);
                    tracing::warn!(
                        request_id = %ctx.request_id,
                        endpoint = endpoint.as_str(),
                        deployment = %deployment.name,
                        status = error.status,
                        error = %error,
                        "upstream attempt failed"
                    );
                    let retryable = error.retryable();
                    attempts.push(Attempt {
                        provider: deployment.provider.clone(),
                        deployment: deployment.name.clone(),
                        error,
                    });
                    if !retryable {
                        break;
                    }
                }
            }
        }
        if attempts.is_empty() && !byok_missing.is_empty() {
            byok_missing.dedup();
            return Err(GatewayError::new(
                ErrorKind::Forbidden,
                format!(
                    "This tenant uses only its own provider keys (byok_only) and has none for {}; register one with POST /admin/v1/tenants/{{tenant_id}}/credentials.",
                    byok_missing.join(", ")
                ),
            ));
        }
        Err(GatewayError::from_attempts(attempts))
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

    fn settle_error(
        &self,
        ctx: &RequestCtx,
        route: &ModelRoute,
        endpoint: Endpoint,
        e: GatewayError,
    ) -> GatewayError {
        let provider = e.attempts.last().map_or("none", |a| a.error.provider);
        let labels = RequestLabels { endpoint: endpoint.as_str(), model: &route.alias, provider };
        metrics::record_request(labels, e.status(), ctx.started.elapsed());
        e
    }
}

/// Meters a finished (non-streaming) answer.
fn settle(ctx: &RequestCtx, route: &ModelRoute, d: &Deployment, endpoint: Endpoint, usage: Option<&Usage>) {
    let labels =
        RequestLabels { endpoint: endpoint.as_str(), model: &route.alias, provider: d.provider_kind };
    metrics::record_request(labels, 200, ctx.started.elapsed());
    if let Some(u) = usage {
        metrics::record_tokens(&route.alias, d.provider_kind, u);
    }
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
/// that did not ask for it, and meters the request when the stream ends or is dropped (a client
/// that disconnects still gets its request counted).
pub struct MeteredStream {
    first: Option<ChatChunk>,
    inner: ChunkStream,
    wants_usage: bool,
    usage: Option<Usage>,
    first_token_seen: bool,
    failed: bool,
    settled: bool,
    started: Instant,
    alias: String,
    provider: &'static str,
}

impl MeteredStream {
    fn new(
        ctx: &RequestCtx,
        route: &ModelRoute,
        deployment: &Deployment,
        first: ChatChunk,
        inner: ChunkStream,
        wants_usage: bool,
    ) -> Self {
        Self {
            first: Some(first),
            inner,
            wants_usage,
            usage: None,
            first_token_seen: false,
            failed: false,
            settled: false,
            started: ctx.started,
            alias: route.alias.clone(),
            provider: deployment.provider_kind,
        }
    }

    /// Looks at one chunk on its way out; returns `None` if the client must not see it.
    fn observe(&mut self, mut chunk: ChatChunk) -> Option<ChatChunk> {
        if !self.first_token_seen
            && chunk.choices.iter().any(|c| c.delta.content.is_some() || c.delta.tool_calls.is_some())
        {
            self.first_token_seen = true;
            metrics::record_ttft(&self.alias, self.provider, self.started.elapsed());
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
        // A stream that failed mid-way already sent 200 headers; the metric records what the
        // client experienced: a broken answer.
        let status = if self.failed { 502 } else { 200 };
        let labels =
            RequestLabels { endpoint: Endpoint::Chat.as_str(), model: &self.alias, provider: self.provider };
        metrics::record_request(labels, status, self.started.elapsed());
        if let Some(u) = &self.usage {
            metrics::record_tokens(&self.alias, self.provider, u);
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
                    this.settle();
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    this.failed = true;
                    this.settle();
                    metrics::record_upstream_error(this.provider, &e.kind);
                    Poll::Ready(Some(Err(GatewayError::from(e))))
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
