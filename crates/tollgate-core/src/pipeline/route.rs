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
use tollgate_types::ports::{CallCtx, ProviderAdapter, ProviderError, ProviderErrorKind, QuotaCell};
use tollgate_types::{Attempt, ErrorKind, GatewayError};

use super::{Call, Gateway, RequestCtx, Served};
use crate::auth::Principal;
use crate::byok::CredentialSet;
use crate::limits::{Charge, Headroom, RateLimitHeaders};
use crate::metrics;
use crate::registry::{Deployment, ModelRoute};
use crate::routing::{Availability, Candidate, InFlight, Outcome, Strategy, note_breaker};

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
    /// `x-tollgate-first-byte-timeout`: bound on each attempt's wait for the upstream's first
    /// byte (response headers; for a stream, its first chunk follows them), shortening the
    /// deployments' own `timeouts.first_byte` (never lengthening it). A deployment that misses it
    /// fails that attempt as a timeout and the request moves on.
    pub first_byte_timeout: Option<Duration>,
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
        let (tenant_tags, key_tags) = allowed_tags(&ctx.principal);
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut byok_missing: Vec<String> = Vec::new();
        // Deployments this request must not try again (bad credential, prompt too long).
        let mut spent: HashSet<usize> = HashSet::new();
        let mut too_long = false;
        // Deployments left out by the request's tags, and by the tenant's or the key's allowed tags.
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
                    // Both restrictions hold: the key's narrows the tenant's, never widens it.
                    if !allowed_tags_match(d, tenant_tags) {
                        untagged.by_tenant = true;
                        continue;
                    }
                    if !allowed_tags_match(d, key_tags) {
                        untagged.by_key = true;
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
                let mut order = alias.selector.order(&candidates, &mut rand::rng());
                let mut next = 0;
                while next < order.len() {
                    let slot = order[next];
                    next += 1;
                    let Some(d) = alias.deployments.get(slot) else { continue };
                    let Some(adapter) = self.adapter_for(&tenant, d) else {
                        byok_missing.push(d.provider.clone());
                        spent.insert(d.index);
                        continue;
                    };
                    let now = Instant::now();
                    if budget.attempts_left == 0 || budget.expired(now) {
                        break 'aliases;
                    }
                    let Some(probe) = admit(d, now, &mut available_at) else { continue };
                    budget.attempts_left -= 1;
                    tried_this_round = true;
                    let first = Try { d: d.clone(), probe, started: now };
                    let primary =
                        self.attempt(ctx, spec, charge, first.clone(), adapter, budget.remaining(now), &call);
                    let hedge_after = alias.routing.hedge_after.filter(|_| budget.attempts_left > 0);
                    let raced = match hedge_after {
                        None => Raced { tries: vec![(first, primary.await)], hedged: false },
                        Some(after) => {
                            // The hedge goes to the next deployment in this alias's order that
                            // the request may use; it is taken out of the order once started.
                            let start_hedge = || {
                                let now = Instant::now();
                                if budget.expired(now) {
                                    return None;
                                }
                                // Skipped here (cooling down, open, no credential) is not taken
                                // out of the order: the round still gets to it as usual.
                                let (at, d, adapter, probe) =
                                    order[next..].iter().enumerate().find_map(|(k, slot)| {
                                        let d = alias.deployments.get(*slot)?;
                                        if spent.contains(&d.index) {
                                            return None;
                                        }
                                        let adapter = self.adapter_for(&tenant, d)?;
                                        let probe = admit(d, now, &mut None)?;
                                        Some((next + k, d, adapter, probe))
                                    })?;
                                order.remove(at);
                                budget.attempts_left -= 1;
                                let t = Try { d: d.clone(), probe, started: now };
                                let fut = self.attempt(
                                    ctx,
                                    spec,
                                    charge,
                                    t.clone(),
                                    adapter,
                                    budget.remaining(now),
                                    &call,
                                );
                                Some((t, fut))
                            };
                            race(&alias.alias, (first, primary), after, start_hedge, charge, spec.streaming)
                                .await
                        }
                    };
                    let Raced { tries, hedged } = raced;
                    let mut won = None;
                    let mut failed = Vec::with_capacity(tries.len());
                    for (t, result) in tries {
                        match result {
                            Ok(value) => won = Some((t, value)),
                            Err(error) => failed.push((t, error)),
                        }
                    }
                    // A success wins whatever failed before it in a hedged race.
                    if let Some((t, (value, in_flight))) = won {
                        attempts.extend(failed.into_iter().map(|(lost, error)| Attempt {
                            provider: lost.d.provider.clone(),
                            deployment: lost.d.name.clone(),
                            error,
                        }));
                        return Ok(Served {
                            value,
                            deployment: t.d,
                            route: alias.clone(),
                            attempts: max_attempts - budget.attempts_left,
                            hedged,
                            in_flight: Some(in_flight),
                            rate_limits: RateLimitHeaders::default(),
                            cache: None,
                        });
                    }
                    for (t, error) in failed {
                        let d = &t.d;
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

    /// The adapter `d` is called through for this request: with the tenant's own credential for
    /// its provider when it has one; `None` when the tenant is `byok_only` and has none.
    fn adapter_for(
        &self,
        tenant: &Option<(CredentialSet, bool)>,
        d: &Deployment,
    ) -> Option<Arc<dyn ProviderAdapter>> {
        match tenant {
            None => Some(d.adapter.clone()),
            Some((set, byok_only)) => match set.get(&d.provider) {
                Some(credential) => Some(self.registry.adapter_with(d, credential)),
                None if *byok_only => None,
                None => Some(d.adapter.clone()),
            },
        }
    }

    /// One upstream call on `t.d`: the deployment's own limits, the call, and what its outcome
    /// says about the deployment (health, metrics, log). Dropped before it ends (a hedged race
    /// lost, the client gone), it records nothing; the race or the charge's drop does.
    #[expect(clippy::too_many_arguments, reason = "one attempt's whole context, passed straight through")]
    async fn attempt<T, F, Fut>(
        &self,
        ctx: &RequestCtx,
        spec: Call,
        charge: &Charge,
        t: Try,
        adapter: Arc<dyn ProviderAdapter>,
        remaining: Option<Duration>,
        call: &F,
    ) -> Answered<T>
    where
        F: Fn(Arc<dyn ProviderAdapter>, CallCtx) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let d = &t.d;
        let call_ctx = CallCtx {
            upstream_model: d.upstream_model.clone(),
            request_id: ctx.request_id.clone(),
            first_byte_timeout: bounded(
                ctx.controls
                    .first_byte_timeout
                    .map_or(d.timeouts.first_byte, |t| t.min(d.timeouts.first_byte)),
                remaining,
            ),
            total_timeout: bounded(d.timeouts.total, remaining),
            include_usage: true,
            quota: QuotaCell::default(),
        };
        let quota = call_ctx.quota.clone();
        let in_flight = d.health.begin();
        let outcome = match &self.enforcer {
            Some(enforcer) => match enforcer.admit_deployment(charge, d).await {
                Ok(room) => {
                    if room != Headroom::default() {
                        d.health.observe_headroom(t.started, room.requests, room.tokens);
                    }
                    call(adapter, call_ctx).await
                }
                Err(at_limit) => Err(at_limit),
            },
            None => call(adapter, call_ctx).await,
        };
        let elapsed = t.started.elapsed();
        d.health.observe_quota_cell(Instant::now(), &quota);
        match outcome {
            Ok(value) => {
                // A stream's call returns at its first chunk: that is its latency.
                let sample = if spec.streaming {
                    Outcome::Success { ttft: Some(elapsed), total: elapsed }
                } else {
                    Outcome::Success { ttft: None, total: elapsed }
                };
                note_breaker(d, d.health.record(Instant::now(), sample, t.probe));
                ::metrics::counter!(ATTEMPTS, "deployment" => d.label.clone(), "outcome" => "ok")
                    .increment(1);
                ::metrics::histogram!(DEPLOYMENT_LATENCY, "deployment" => d.label.clone())
                    .record(elapsed.as_secs_f64());
                Ok((value, in_flight))
            }
            Err(error) => {
                drop(in_flight);
                charge.release_deployment(d.index);
                note_breaker(d, d.health.record(Instant::now(), outcome_of(&error), t.probe));
                metrics::record_upstream_error(d.provider_kind, &error.kind);
                ::metrics::counter!(ATTEMPTS, "deployment" => d.label.clone(), "outcome" => attempt_label(&error))
                    .increment(1);
                tracing::warn!(
                    request_id = %ctx.request_id,
                    endpoint = spec.endpoint.as_str(),
                    deployment = %d.name,
                    status = error.status,
                    error = %error,
                    "upstream attempt failed"
                );
                Err(error)
            }
        }
    }
}

/// One attempt: where it went, whether it holds a half-open probe slot, when it started.
#[derive(Clone)]
struct Try {
    d: Arc<Deployment>,
    probe: bool,
    started: Instant,
}

/// What one call returns: the answer, counted in flight at its deployment while it is used.
type Answered<T> = Result<(T, InFlight), ProviderError>;

/// How an attempt, hedged or not, ended: one entry per call made (at most one success).
struct Raced<T> {
    tries: Vec<(Try, Answered<T>)>,
    /// A second call was started.
    hedged: bool,
}

/// Hedged attempts by `model` and `winner` (`first`, `hedge`, or `none` when both failed).
pub const HEDGES: &str = "tollgate_hedges_total";

/// Whether `d` may take an attempt now: `Some(probe)` (whether a half-open probe slot was
/// taken), or `None` while it cools down after a 429 (noted in `available_at`) or its breaker
/// is open.
fn admit(d: &Deployment, now: Instant, available_at: &mut Option<Instant>) -> Option<bool> {
    let (availability, change) = d.health.admit(now);
    note_breaker(d, change);
    match availability {
        Availability::Ready => Some(false),
        Availability::Probe => Some(true),
        // Only a 429 cooldown is worth a short wait; an open breaker fails fast.
        Availability::CoolingDown { until } => {
            *available_at = Some(available_at.map_or(until, |a| a.min(until)));
            None
        }
        Availability::Open { .. } => None,
    }
}

/// Hedging: runs `first`; if it has not answered after `after`, starts the same request on
/// another deployment (`start_hedge`, which may find none) and takes the first success,
/// cancelling the other call. A call that fails does not end the race while the other runs.
async fn race<T, Fut>(
    model: &str,
    first: (Try, Fut),
    after: Duration,
    start_hedge: impl FnOnce() -> Option<(Try, Fut)>,
    charge: &Charge,
    streaming: bool,
) -> Raced<T>
where
    Fut: Future<Output = Answered<T>>,
{
    let (a, fut_a) = first;
    let mut fut_a = Box::pin(fut_a);
    tokio::select! {
        r = &mut fut_a => return Raced { tries: vec![(a, r)], hedged: false },
        () = tokio::time::sleep(after) => {}
    }
    let Some((b, fut_b)) = start_hedge() else {
        return Raced { tries: vec![(a, fut_a.await)], hedged: false };
    };
    let mut fut_b = Box::pin(fut_b);
    let (done, other, winner) = tokio::select! {
        r = &mut fut_a => ((a, r), (b, fut_b), "first"),
        r = &mut fut_b => ((b, r), (a, fut_a), "hedge"),
    };
    let (o, fut) = other;
    if done.1.is_ok() {
        drop(fut);
        abandon(&o, charge, streaming);
        ::metrics::counter!(HEDGES, "model" => model.to_owned(), "winner" => winner).increment(1);
        return Raced { tries: vec![done], hedged: true };
    }
    let r = fut.await;
    let winner = match (r.is_ok(), winner) {
        (false, _) => "none",
        (true, "first") => "hedge",
        (true, _) => "first",
    };
    ::metrics::counter!(HEDGES, "model" => model.to_owned(), "winner" => winner).increment(1);
    Raced { tries: vec![done, (o, r)], hedged: true }
}

/// The call of `t` lost a hedged race and was cancelled: its slot goes back (its request and
/// token reservations stay, the upstream may have counted the call) and its elapsed time is a
/// latency sample.
fn abandon(t: &Try, charge: &Charge, streaming: bool) {
    charge.cancel_deployment(t.d.index);
    let elapsed = t.started.elapsed();
    note_breaker(&t.d, t.d.health.record(Instant::now(), Outcome::Abandoned { elapsed, streaming }, t.probe));
    ::metrics::counter!(ATTEMPTS, "deployment" => t.d.label.clone(), "outcome" => "cancelled").increment(1);
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

/// The tags the caller's requests are restricted to: the tenant's and the key's own (each
/// empty: no restriction). A deployment must carry one of each.
fn allowed_tags(principal: &Principal) -> (&[String], &[String]) {
    match principal {
        Principal::Key(k) => (&k.policy.allowed_tags, &k.allowed_tags),
        Principal::SuperAdmin => (&[], &[]),
    }
}

/// The deployment carries every tag the request pinned.
fn requested_tags_match(d: &Deployment, requested: &[String]) -> bool {
    requested.iter().all(|t| d.routing.tags.contains(t))
}

/// The deployment carries one of the allowed tags (the tenant's or the key's), if there are any.
fn allowed_tags_match(d: &Deployment, allowed: &[String]) -> bool {
    allowed.is_empty() || allowed.iter().any(|t| d.routing.tags.contains(t))
}

/// Whether tags left deployments out, to tell "none matches" from "none works".
#[derive(Debug, Default, Clone, Copy)]
struct Untagged {
    by_request: bool,
    by_tenant: bool,
    /// A deployment the tenant may use was left out by the key's own allowed tags.
    by_key: bool,
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
    // The key's restriction first: when it left out a deployment, the tenant's allowed that one,
    // so it is the key that closed the alias.
    if !untagged.any_matched && untagged.by_key {
        return GatewayError::new(
            ErrorKind::Forbidden,
            format!(
                "This API key is restricted to its allowed tags (allowed_tags), and no deployment of `{}` that the tenant may use has one.",
                route.alias
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
