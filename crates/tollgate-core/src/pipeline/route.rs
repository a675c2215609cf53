//! The `route` stage: which deployments a request may use, in which order, and how failures
//! are handled — retries with backoff, circuit breakers, cooldowns after a 429, fallback
//! aliases (ordered, context-window and content-policy), all bounded by an attempt budget and
//! a deadline.
//!
//! One request goes through rounds. A round walks the alias and then its fallback aliases;
//! within each, the deployments the caller may use, ordered by the alias's strategy, each
//! skipped while its breaker is open or it cools down after a 429. A retryable failure moves
//! on at once to the next deployment; only when a whole round failed does the request wait
//! (exponential backoff with full jitter, at least the upstream's Retry-After) before the next
//! round. A streamed answer is never retried once its first chunk arrived: the call closure
//! returns only after the first chunk.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_types::ports::{CallCtx, ProviderAdapter, ProviderError, ProviderErrorKind};
use tollgate_types::{Attempt, ErrorKind, GatewayError};

use super::{Call, Gateway, RequestCtx, Served};
use crate::auth::Principal;
use crate::limits::{Charge, Headroom, RateLimitHeaders};
use crate::metrics;
use crate::registry::{Deployment, ModelRoute};
use crate::routing::{Availability, Candidate, Outcome, Strategy, note_breaker};

/// Longest a request waits for a deployment to come out of its cooldown or open breaker when
/// every deployment is unavailable; beyond it the request fails at once with Retry-After.
const MAX_UNAVAILABLE_WAIT: Duration = Duration::from_secs(2);

/// Longest backoff (or upstream Retry-After) a request waits before another round.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Per-request routing controls, from the client's headers (see `docs/routing.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteControls {
    /// `x-tollgate-fallbacks: off`: only the requested alias's deployments.
    pub no_fallbacks: bool,
    /// `x-tollgate-tags: eu,fast`: only deployments carrying every one of these tags.
    pub tags: Vec<String>,
    /// `x-tollgate-timeout`: bound on the whole request, replacing the alias's deadline.
    pub timeout: Option<Duration>,
}

/// Why the request moved to another alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FallbackReason {
    Failed,
    ContextWindow,
    ContentPolicy,
}

impl FallbackReason {
    fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Failed => "failed",
            FallbackReason::ContextWindow => "context_window",
            FallbackReason::ContentPolicy => "content_policy",
        }
    }
}

/// The aliases a request may use, in order, each with why it was added.
struct Chain {
    aliases: Vec<(Arc<ModelRoute>, FallbackReason)>,
}

impl Chain {
    fn contains(&self, route: &Arc<ModelRoute>) -> bool {
        self.aliases.iter().any(|(r, _)| Arc::ptr_eq(r, route))
    }

    fn add(&mut self, route: Arc<ModelRoute>, reason: FallbackReason) {
        if !self.contains(&route) {
            self.aliases.push((route, reason));
        }
    }

    /// Puts `route` at `at` (the next alias to visit), for fallbacks that answer a specific
    /// failure and so go before the ordered ones.
    fn add_next(&mut self, at: usize, route: Arc<ModelRoute>, reason: FallbackReason) {
        if !self.contains(&route) {
            self.aliases.insert(at.min(self.aliases.len()), (route, reason));
        }
    }
}

/// What the request may still spend.
struct Budget {
    attempts_left: u32,
    deadline: Option<Instant>,
}

impl Budget {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

impl Gateway {
    /// Calls deployments of `route` (then its fallbacks) until one answers or the attempt
    /// budget or deadline runs out. A non-retryable error (the request itself is bad) ends at
    /// once; every failure is kept as an [`Attempt`].
    pub(super) async fn call_with_fallback<T, F, Fut>(
        &self,
        ctx: &RequestCtx,
        route: &Arc<ModelRoute>,
        spec: Call,
        charge: &Charge,
        call: F,
    ) -> Result<Served<T>, GatewayError>
    where
        F: Fn(Arc<dyn ProviderAdapter>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let tenant = self.tenant_credentials(&ctx.principal).await?;
        let defaults = &self.routing;
        let prompt_tokens = spec.prompt_tokens;
        let max_attempts = route.routing.max_attempts.unwrap_or(defaults.max_attempts);
        let mut chain = Chain { aliases: vec![(route.clone(), FallbackReason::Failed)] };
        if !ctx.controls.no_fallbacks {
            for f in &route.routing.fallbacks {
                if let Some(r) = self.registry.route(f) {
                    chain.add(r.clone(), FallbackReason::Failed);
                }
            }
        }
        let mut budget = Budget {
            attempts_left: max_attempts,
            deadline: ctx
                .controls
                .timeout
                .or(route.routing.deadline)
                .or(defaults.deadline)
                .map(|d| ctx.started + d),
        };
        let allowed_tags = allowed_tags(&ctx.principal);
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut byok_missing: Vec<String> = Vec::new();
        // Deployments this request must not try again (bad credential, prompt too long).
        let mut spent: HashSet<usize> = HashSet::new();
        let mut too_long = false;
        // Deployments left out by the request's tags, and by the tenant's allowed tags.
        let mut untagged = Untagged::default();
        let mut round = 0u32;
        loop {
            let mut tried_this_round = false;
            let mut retryable_left = false;
            let mut retry_after: Option<Duration> = None;
            let mut available_at: Option<Instant> = None;
            let mut i = 0;
            'aliases: while i < chain.aliases.len() {
                let (alias, reason) = chain.aliases[i].clone();
                i += 1;
                if round == 0 && i > 1 {
                    ::metrics::counter!(
                        FALLBACKS,
                        "from" => route.alias.clone(),
                        "to" => alias.alias.clone(),
                        "reason" => reason.as_str()
                    )
                    .increment(1);
                }
                let mut fits = 0;
                let mut candidates = Vec::with_capacity(alias.deployments.len());
                for (slot, d) in alias.deployments.iter().enumerate() {
                    if spent.contains(&d.index) {
                        continue;
                    }
                    if !requested_tags_match(d, &ctx.controls.tags) {
                        untagged.by_request = true;
                        continue;
                    }
                    if !allowed_tags_match(d, allowed_tags) {
                        untagged.by_tenant = true;
                        continue;
                    }
                    untagged.any_matched = true;
                    if let (Some(window), Some(prompt)) = (d.routing.context_window, prompt_tokens)
                        && prompt > window
                    {
                        continue;
                    }
                    fits += 1;
                    candidates.push(self.candidate(ctx, alias.selector.strategy(), d, slot, prompt_tokens));
                }
                if fits == 0 && prompt_tokens.is_some() && any_too_small(&alias, prompt_tokens) {
                    too_long = true;
                    if let Some(r) = context_fallback(self, &alias, ctx) {
                        chain.add_next(i, r, FallbackReason::ContextWindow);
                    }
                    continue;
                }
                let order = alias.selector.order(&candidates, &mut rand::rng());
                for slot in order {
                    let Some(d) = alias.deployments.get(slot) else { continue };
                    let adapter = match &tenant {
                        None => d.adapter.clone(),
                        Some((set, byok_only)) => match set.get(&d.provider) {
                            Some(credential) => self.registry.adapter_with(d, credential),
                            None if *byok_only => {
                                byok_missing.push(d.provider.clone());
                                spent.insert(d.index);
                                continue;
                            }
                            None => d.adapter.clone(),
                        },
                    };
                    let now = Instant::now();
                    if budget.attempts_left == 0 || budget.expired(now) {
                        break 'aliases;
                    }
                    let (availability, change) = d.health.admit(now);
                    note_breaker(d, change);
                    let probe = match availability {
                        Availability::Ready => false,
                        Availability::Probe => true,
                        // Only a 429 cooldown is worth a short wait; an open breaker fails fast.
                        Availability::CoolingDown { until } => {
                            available_at = Some(available_at.map_or(until, |a| a.min(until)));
                            continue;
                        }
                        Availability::Open { .. } => continue,
                    };
                    budget.attempts_left -= 1;
                    tried_this_round = true;
                    let call_ctx = CallCtx {
                        upstream_model: d.upstream_model.clone(),
                        request_id: ctx.request_id.clone(),
                        first_byte_timeout: bounded(d.timeouts.first_byte, budget.remaining(now)),
                        total_timeout: bounded(d.timeouts.total, budget.remaining(now)),
                        include_usage: true,
                    };
                    let in_flight = d.health.begin();
                    let outcome = match &self.enforcer {
                        Some(enforcer) => match enforcer.admit_deployment(charge, d).await {
                            Ok(room) => {
                                if room != Headroom::default() {
                                    d.health.observe_headroom(now, room.requests, room.tokens);
                                }
                                call(adapter, call_ctx).await
                            }
                            Err(at_limit) => Err(at_limit),
                        },
                        None => call(adapter, call_ctx).await,
                    };
                    let elapsed = now.elapsed();
                    match outcome {
                        Ok(value) => {
                            // A stream's call returns at its first chunk: that is its latency.
                            let sample = if spec.streaming {
                                Outcome::Success { ttft: Some(elapsed), total: elapsed }
                            } else {
                                Outcome::Success { ttft: None, total: elapsed }
                            };
                            note_breaker(d, d.health.record(Instant::now(), sample, probe));
                            ::metrics::counter!(ATTEMPTS, "deployment" => d.label.clone(), "outcome" => "ok")
                                .increment(1);
                            ::metrics::histogram!(DEPLOYMENT_LATENCY, "deployment" => d.label.clone())
                                .record(elapsed.as_secs_f64());
                            let used = max_attempts - budget.attempts_left;
                            return Ok(Served {
                                value,
                                deployment: d.clone(),
                                route: alias.clone(),
                                attempts: used,
                                in_flight: Some(in_flight),
                                rate_limits: RateLimitHeaders::default(),
                            });
                        }
                        Err(error) => {
                            drop(in_flight);
                            charge.release_deployment();
                            note_breaker(d, d.health.record(Instant::now(), outcome_of(&error), probe));
                            metrics::record_upstream_error(d.provider_kind, &error.kind);
                            ::metrics::counter!(
                                ATTEMPTS,
                                "deployment" => d.label.clone(),
                                "outcome" => attempt_label(&error)
                            )
                            .increment(1);
                            tracing::warn!(
                                request_id = %ctx.request_id,
                                endpoint = spec.endpoint.as_str(),
                                deployment = %d.name,
                                status = error.status,
                                error = %error,
                                "upstream attempt failed"
                            );
                            let kind = error.kind.clone();
                            let context_length = is_context_length(&error);
                            let hint = error.retry_after;
                            attempts.push(Attempt {
                                provider: d.provider.clone(),
                                deployment: d.name.clone(),
                                error,
                            });
                            match kind {
                                ProviderErrorKind::ContentFilter => {
                                    match content_fallback(self, &alias, ctx) {
                                        Some(r) => chain.add_next(i, r, FallbackReason::ContentPolicy),
                                        None => return Err(GatewayError::from_attempts(attempts)),
                                    }
                                    continue 'aliases;
                                }
                                ProviderErrorKind::BadRequest if context_length => {
                                    spent.insert(d.index);
                                    match context_fallback(self, &alias, ctx) {
                                        Some(r) => chain.add_next(i, r, FallbackReason::ContextWindow),
                                        None => return Err(GatewayError::from_attempts(attempts)),
                                    }
                                    continue 'aliases;
                                }
                                ProviderErrorKind::BadRequest | ProviderErrorKind::Unsupported => {
                                    return Err(GatewayError::from_attempts(attempts));
                                }
                                // Another deployment may hold a working credential; this one
                                // will not start working within the request.
                                ProviderErrorKind::Auth | ProviderErrorKind::MissingCredential { .. } => {
                                    spent.insert(d.index);
                                }
                                // The deployment cools down for its Retry-After and is skipped
                                // until then; other deployments need not wait for it.
                                ProviderErrorKind::RateLimited => retryable_left = true,
                                _ => {
                                    retryable_left = true;
                                    retry_after = retry_after.max(hint);
                                }
                            }
                        }
                    }
                }
            }
            let now = Instant::now();
            if budget.attempts_left == 0 || budget.expired(now) {
                break;
            }
            let wait = if tried_this_round {
                if !retryable_left {
                    break;
                }
                let wait = self.routing.backoff.delay(round, retry_after, &mut rand::rng());
                if wait > MAX_RETRY_WAIT {
                    // The upstream asked for longer than a request should hang: the client
                    // gets the error and its Retry-After instead.
                    break;
                }
                wait
            } else {
                // Every usable deployment is cooling down or open: wait a little if one
                // cools down soon, otherwise answer now with when to come back.
                match available_at {
                    Some(at) if at.saturating_duration_since(now) <= MAX_UNAVAILABLE_WAIT => {
                        at.saturating_duration_since(now)
                    }
                    _ => break,
                }
            };
            if budget.remaining(now).is_some_and(|left| wait >= left) {
                break;
            }
            ::metrics::counter!(RETRIES, "model" => route.alias.clone()).increment(1);
            tokio::time::sleep(wait).await;
            round += 1;
        }
        Err(give_up(route, attempts, byok_missing, too_long, untagged, &budget))
    }

    /// What the strategy needs to know about one deployment for this request.
    fn candidate(
        &self,
        ctx: &RequestCtx,
        strategy: Strategy,
        d: &Deployment,
        slot: usize,
        prompt_tokens: Option<u64>,
    ) -> Candidate {
        let now = Instant::now();
        let cost = match (&self.pricer, strategy) {
            (Some(pricer), Strategy::Cost) => {
                let tenant = match &ctx.principal {
                    Principal::Key(k) => Some(&*k.pricing),
                    Principal::SuperAdmin => None,
                };
                // A typical request's price when the prompt was not counted: only the order
                // between deployments matters.
                let prompt = prompt_tokens.unwrap_or(TYPICAL_PROMPT_TOKENS);
                let now = time::OffsetDateTime::now_utc();
                Some(pricer.worst_case(tenant, d.kind, &d.upstream_model, prompt, TYPICAL_OUTPUT_TOKENS, now))
                    .filter(|c| *c > 0)
            }
            _ => None,
        };
        let in_flight = d.health.in_flight();
        // Unmeasured ranks first so a new deployment gets measured, but only once: while its
        // first requests are still out, more of them would pile onto what may be the slow one.
        let latency = match d.health.latency_score(now) {
            None if in_flight > 0 => Some(UNMEASURED_BUSY),
            score => score,
        };
        Candidate {
            slot,
            weight: d.routing.weight,
            priority: d.routing.priority,
            in_flight,
            latency,
            cost,
            headroom: d.health.headroom(now),
        }
    }
}

/// The latency a deployment without a sample ranks at while requests to it are in flight.
const UNMEASURED_BUSY: Duration = Duration::from_secs(60);

/// The request size the cost strategy prices deployments at when the prompt was not counted.
const TYPICAL_PROMPT_TOKENS: u64 = 1_000;
const TYPICAL_OUTPUT_TOKENS: u64 = 500;

/// Attempts by `deployment` and `outcome` (`ok`, or the error class).
pub const ATTEMPTS: &str = "tollgate_upstream_attempts_total";
/// Rounds after the first (a whole round failed and the request waited to try again).
pub const RETRIES: &str = "tollgate_retries_total";
/// Requests that moved to a fallback alias, by `from`, `to`, `reason`.
pub const FALLBACKS: &str = "tollgate_fallbacks_total";
/// Seconds from an attempt's start to its answer (streams: to the first chunk), by deployment.
pub const DEPLOYMENT_LATENCY: &str = "tollgate_deployment_latency_seconds";

/// What an attempt's failure means for the deployment's health.
fn outcome_of(e: &ProviderError) -> Outcome {
    match e.kind {
        ProviderErrorKind::RateLimited => Outcome::RateLimited { retry_after: e.retry_after },
        ProviderErrorKind::Connect
        | ProviderErrorKind::Timeout
        | ProviderErrorKind::Overloaded
        | ProviderErrorKind::Server
        | ProviderErrorKind::InvalidResponse
        | ProviderErrorKind::Auth
        | ProviderErrorKind::MissingCredential { .. } => Outcome::Failure,
        // The request's own fault: says nothing about the deployment.
        ProviderErrorKind::BadRequest | ProviderErrorKind::ContentFilter | ProviderErrorKind::Unsupported => {
            Outcome::Neutral
        }
    }
}

fn attempt_label(e: &ProviderError) -> &'static str {
    match e.kind {
        ProviderErrorKind::MissingCredential { .. } => "missing_credential",
        ProviderErrorKind::Connect => "connect",
        ProviderErrorKind::Timeout => "timeout",
        ProviderErrorKind::RateLimited => "rate_limited",
        ProviderErrorKind::Overloaded => "overloaded",
        ProviderErrorKind::Server => "server",
        ProviderErrorKind::BadRequest => "bad_request",
        ProviderErrorKind::Auth => "auth",
        ProviderErrorKind::ContentFilter => "content_filter",
        ProviderErrorKind::InvalidResponse => "invalid_response",
        ProviderErrorKind::Unsupported => "unsupported",
    }
}

/// Upstreams say "prompt too long" as a 400 with a code or message naming the context window.
fn is_context_length(e: &ProviderError) -> bool {
    let m = e.message.to_ascii_lowercase();
    m.contains("context_length_exceeded")
        || m.contains("context length")
        || m.contains("context window")
        || m.contains("prompt is too long")
        || m.contains("maximum context")
        // Gemini: "The input token count (…) exceeds the maximum number of tokens allowed (…)".
        || m.contains("exceeds the maximum number of tokens")
}

fn bounded(timeout: Duration, remaining: Option<Duration>) -> Duration {
    remaining.map_or(timeout, |r| timeout.min(r.max(Duration::from_millis(1))))
}

/// The tags a tenant's requests are restricted to (empty: any).
fn allowed_tags(principal: &Principal) -> &[String] {
    match principal {
        Principal::Key(k) => &k.policy.allowed_tags,
        Principal::SuperAdmin => &[],
    }
}

/// The deployment carries every tag the request pinned.
fn requested_tags_match(d: &Deployment, requested: &[String]) -> bool {
    requested.iter().all(|t| d.routing.tags.contains(t))
}

/// The deployment carries one of the tenant's allowed tags, if it has any.
fn allowed_tags_match(d: &Deployment, allowed: &[String]) -> bool {
    allowed.is_empty() || allowed.iter().any(|t| d.routing.tags.contains(t))
}

/// Whether tags left deployments out, to tell "none matches" from "none works".
#[derive(Debug, Default, Clone, Copy)]
struct Untagged {
    by_request: bool,
    by_tenant: bool,
    any_matched: bool,
}

fn any_too_small(alias: &ModelRoute, prompt_tokens: Option<u64>) -> bool {
    alias
        .deployments
        .iter()
        .any(|d| matches!((d.routing.context_window, prompt_tokens), (Some(w), Some(p)) if p > w))
}

fn context_fallback(g: &Gateway, alias: &ModelRoute, ctx: &RequestCtx) -> Option<Arc<ModelRoute>> {
    if ctx.controls.no_fallbacks {
        return None;
    }
    alias.routing.context_window_fallback.as_deref().and_then(|a| g.registry.route(a)).cloned()
}

fn content_fallback(g: &Gateway, alias: &ModelRoute, ctx: &RequestCtx) -> Option<Arc<ModelRoute>> {
    if ctx.controls.no_fallbacks {
        return None;
    }
    alias.routing.content_policy_fallback.as_deref().and_then(|a| g.registry.route(a)).cloned()
}

/// The error when no attempt succeeded.
fn give_up(
    route: &ModelRoute,
    attempts: Vec<Attempt>,
    mut byok_missing: Vec<String>,
    too_long: bool,
    untagged: Untagged,
    budget: &Budget,
) -> GatewayError {
    if !attempts.is_empty() {
        let mut err = GatewayError::from_attempts(attempts);
        if budget.expired(Instant::now()) && err.kind != ErrorKind::UpstreamTimeout {
            err.message = format!("the request's deadline passed; {}", err.message);
        }
        return err;
    }
    if !byok_missing.is_empty() {
        byok_missing.sort_unstable();
        byok_missing.dedup();
        return GatewayError::new(
            ErrorKind::Forbidden,
            format!(
                "This tenant uses only its own provider keys (byok_only) and has none for {}; register one with POST /admin/v1/tenants/{{tenant_id}}/credentials.",
                byok_missing.join(", ")
            ),
        );
    }
    if !untagged.any_matched && untagged.by_tenant {
        return GatewayError::new(
            ErrorKind::Forbidden,
            format!(
                "This tenant may only use deployments with its allowed tags, and no deployment of `{}` has one.",
                route.alias
            ),
        );
    }
    if !untagged.any_matched && untagged.by_request {
        let mut err = GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("No deployment of `{}` carries every tag of x-tollgate-tags.", route.alias),
        );
        err.param = Some("x-tollgate-tags".to_owned());
        return err;
    }
    if too_long {
        let mut err = GatewayError::new(
            ErrorKind::InvalidRequest,
            format!(
                "The prompt is longer than the context window of every deployment of `{}` and no context_window_fallback takes it (context_length_exceeded).",
                route.alias
            ),
        );
        err.param = Some("messages".to_owned());
        return err;
    }
    if budget.expired(Instant::now()) {
        return GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "The request's deadline passed before any deployment could be tried.",
        );
    }
    let now = Instant::now();
    let wait = route
        .deployments
        .iter()
        .filter_map(|d| {
            let snap = d.health.snapshot(now);
            snap.open_until_ms.max(snap.cooling_down_ms)
        })
        .min()
        .map(Duration::from_millis);
    let mut err = GatewayError::new(
        ErrorKind::Unavailable,
        format!(
            "No deployment of `{}` can take requests now: their circuit breakers are open or the upstream rate-limited them; retry after the time in Retry-After.",
            route.alias
        ),
    );
    err.retry_after = wait.map(|w| w.max(Duration::from_secs(1)));
    err
}
