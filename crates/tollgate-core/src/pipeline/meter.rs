//! Settling one request: its metrics, its cost, its usage record and its limit reservations,
//! from every way a request ends — rejected before routing, failed at every deployment,
//! answered, streamed (settled when the stream ends, fails, or the client leaves), or abandoned
//! by its client before any answer (settled when the request is dropped).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tollgate_types::ports::cache::CachedResponse;
use tollgate_types::ports::usage::{TokenSource, UsageRecord, UsageSink};
use tollgate_types::{GatewayError, JsonMap, Usage};

use super::{Endpoint, RequestCtx};
use crate::auth::Principal;
use crate::cache::CacheStatus;
use crate::limits::Charge;
use crate::metering::Pricer;
use crate::metrics::{self, RequestLabels};
use crate::registry::Deployment;

/// What a request's settlement needs to know, captured when it starts.
pub(crate) struct Meter {
    sink: Option<Arc<dyn UsageSink>>,
    request_id: String,
    started: Instant,
    principal: Principal,
    endpoint: Endpoint,
    /// The model the client asked for, as sent.
    model: String,
    user: Option<String>,
    metadata: JsonMap,
    /// Wall-clock start, the time prices are looked up at.
    started_at: time::OffsetDateTime,
    pricer: Option<Arc<Pricer>>,
    /// What admission reserved against the caller's limits.
    charge: Charge,
    /// Set once the request is settled; a meter dropped unsettled records an abandoned request.
    done: AtomicBool,
    /// The answer came from a hedged attempt (two deployments were called).
    hedged: bool,
    /// What the response cache did (chat requests that reached the `cache` stage).
    cache_status: Option<CacheStatus>,
    /// On a cache hit: the stored answer's original cost.
    cost_saved: Option<u64>,
}

/// How an answered request went.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub usage: Option<&'a Usage>,
    pub source: TokenSource,
    pub ttft: Option<Duration>,
    /// Upstream attempts the request made, the answering one included (`Served::attempts`).
    pub attempts: u32,
}

impl Answer<'_> {
    /// A complete answer after `attempts` upstream attempts; tokens from the provider when it
    /// reported them.
    pub(crate) fn ok(usage: Option<&Usage>, attempts: u32) -> Answer<'_> {
        let source = if usage.is_some() { TokenSource::Provider } else { TokenSource::None };
        Answer { status: 200, error_code: None, usage, source, ttft: None, attempts }
    }
}

impl Meter {
    pub(crate) fn new(
        sink: Option<Arc<dyn UsageSink>>,
        pricer: Option<Arc<Pricer>>,
        ctx: &RequestCtx,
        endpoint: Endpoint,
        model: &str,
        user: Option<&str>,
        metadata: Option<&JsonMap>,
    ) -> Self {
        // Without a sink nothing below is recorded, so skip the copies.
        let recording = sink.is_some();
        Self {
            sink,
            request_id: ctx.request_id.clone(),
            started: ctx.started,
            principal: ctx.principal.clone(),
            endpoint,
            model: if recording { model.to_owned() } else { String::new() },
            user: user.filter(|_| recording).map(str::to_owned),
            metadata: metadata.filter(|_| recording).cloned().unwrap_or_default(),
            started_at: time::OffsetDateTime::now_utc(),
            pricer,
            charge: Charge::none(),
            done: AtomicBool::new(false),
            hedged: false,
            cache_status: None,
            cost_saved: None,
        }
    }

    /// Hands the meter what admission reserved, to settle when the request ends.
    pub(crate) fn attach(&mut self, charge: Charge) {
        self.charge = charge;
    }

    /// Records whether the answer came from a hedged attempt ([`super::Served::hedged`]).
    pub(crate) fn note_hedged(&mut self, hedged: bool) {
        self.hedged = hedged;
    }

    /// Records what the response cache did for the request.
    pub(crate) fn note_cache(&mut self, status: CacheStatus) {
        self.cache_status = Some(status);
    }

    /// The request was answered from the response cache: no upstream call, no cost; the
    /// stored answer's original cost is recorded as saved. `semantic`: matched by meaning.
    pub(crate) fn cached(&mut self, alias: &str, entry: &CachedResponse, semantic: bool) {
        self.cache_status = Some(if semantic { CacheStatus::SemanticHit } else { CacheStatus::Hit });
        self.cost_saved = Some(entry.cost_nanodollars);
        if !self.finish() {
            return;
        }
        let labels = RequestLabels { endpoint: self.endpoint.as_str(), model: alias, provider: "cache" };
        metrics::record_request(labels, 200, self.started.elapsed());
        ::metrics::counter!(crate::cache::service::CACHE_COST_SAVED, "model" => alias.to_owned())
            .increment(entry.cost_nanodollars);
        let answer = Answer::ok(Some(&entry.usage), 0);
        self.emit(Some((&entry.provider, &entry.deployment)), None, Some(&entry.usage), None, &answer);
    }

    pub(crate) fn charge(&self) -> &Charge {
        &self.charge
    }

    fn finish(&self) -> bool {
        !self.done.swap(true, Ordering::AcqRel)
    }

    /// Whether usage records are being written (a store is configured).
    pub(crate) fn is_recording(&self) -> bool {
        self.sink.is_some()
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Refused before any upstream call (invalid, unknown model, not allowed, over a limit).
    pub(crate) fn rejected(&self, e: &GatewayError) {
        if !self.finish() {
            return;
        }
        let labels = RequestLabels { endpoint: self.endpoint.as_str(), model: "unknown", provider: "none" };
        metrics::record_request(labels, e.status(), self.started.elapsed());
        self.emit(
            None,
            None,
            None,
            None,
            &Answer {
                status: e.status(),
                error_code: Some(e.kind.code()),
                usage: None,
                source: TokenSource::None,
                ttft: None,
                attempts: 0,
            },
        );
    }

    /// Every deployment failed (or the request was refused for this tenant).
    pub(crate) fn failed(&self, alias: &str, e: &GatewayError) {
        if !self.finish() {
            return;
        }
        // Failed upstream calls are not billed: every reservation goes back.
        self.charge.settle(0, Some(0));
        let last = e.attempts.last();
        let provider = last.map_or("none", |a| a.error.provider);
        let labels = RequestLabels { endpoint: self.endpoint.as_str(), model: alias, provider };
        metrics::record_request(labels, e.status(), self.started.elapsed());
        let answer = Answer {
            status: e.status(),
            error_code: Some(e.kind.code()),
            usage: None,
            source: TokenSource::None,
            ttft: None,
            // Every attempt failed and is in the error (none when refused before the first,
            // e.g. no usable credential).
            attempts: u32::try_from(e.attempts.len()).unwrap_or(u32::MAX),
        };
        // No `served_model`: nothing served it (the last attempt's alias is not known here).
        self.emit(last.map(|a| (a.error.provider, a.deployment.as_str())), None, None, None, &answer);
    }

    /// A deployment of `alias` (the requested alias or a fallback) answered (for streams: the
    /// stream is over). Returns what the answer cost, in nano-dollars, when priced.
    pub(crate) fn answered(&self, alias: &str, d: &Deployment, answer: &Answer<'_>) -> Option<u64> {
        if !self.finish() {
            return None;
        }
        let cost = match (answer.usage, &self.pricer) {
            (Some(u), Some(pricer)) => {
                pricer.cost(self.tenant_pricing(), d.kind, &d.upstream_model, u, self.started_at)
            }
            _ => None,
        };
        let tokens = answer.usage.map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens));
        self.charge.settle(tokens, cost.as_ref().map(|c| c.nanodollars));
        let labels =
            RequestLabels { endpoint: self.endpoint.as_str(), model: alias, provider: d.provider_kind };
        metrics::record_request(labels, answer.status, self.started.elapsed());
        if let Some(u) = answer.usage {
            metrics::record_tokens(alias, d.provider_kind, u);
        }
        if let Some(ttft) = answer.ttft {
            metrics::record_ttft(alias, d.provider_kind, ttft);
        }
        // The record names the serving alias only when a fallback answered; `model` is always
        // what the client asked for.
        let served_model = (alias != self.model).then_some(alias);
        let nanodollars = cost.as_ref().map(|c| c.nanodollars);
        self.emit(Some((d.provider_kind, d.name.as_str())), served_model, answer.usage, cost, answer);
        nanodollars
    }

    fn tenant_pricing(&self) -> Option<&crate::metering::TenantPricing> {
        match &self.principal {
            Principal::Key(k) => Some(&k.pricing),
            Principal::SuperAdmin => None,
        }
    }

    fn emit(
        &self,
        served_by: Option<(&str, &str)>,
        served_model: Option<&str>,
        usage: Option<&Usage>,
        cost: Option<crate::metering::Cost>,
        answer: &Answer<'_>,
    ) {
        let Some(sink) = &self.sink else { return };
        let (tenant_id, project_id, key_id) = match &self.principal {
            Principal::SuperAdmin => (None, None, None),
            Principal::Key(k) => (Some(k.tenant_id), Some(k.project_id), Some(k.key_id)),
        };
        let u = usage.copied().unwrap_or_default();
        sink.record(UsageRecord {
            id: uuid::Uuid::now_v7(),
            request_id: self.request_id.clone(),
            at: time::OffsetDateTime::now_utc(),
            tenant_id,
            project_id,
            key_id,
            endpoint: self.endpoint.as_str().to_owned(),
            model: self.model.clone(),
            provider: served_by.map(|(p, _)| p.to_owned()),
            deployment: served_by.map(|(_, d)| d.to_owned()),
            status: answer.status,
            error_code: answer.error_code.map(str::to_owned),
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.cached_tokens(),
            reasoning_tokens: u.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
            token_source: answer.source,
            // A cache hit cost nothing upstream.
            cost_nanodollars: cost.as_ref().map(|c| c.nanodollars).or(self.cost_saved.map(|_| 0)),
            price_id: cost.map(|c| c.price_id),
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ttft_ms: answer.ttft.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            cache_status: self.cache_status.map(|s| s.as_str().to_owned()),
            cost_saved_nanodollars: self.cost_saved,
            user: self.user.clone(),
            metadata: self.metadata.clone(),
            served_model: served_model.map(str::to_owned),
            attempts: answer.attempts,
            hedged: self.hedged,
        });
    }
}

impl Drop for Meter {
    /// The client went away before any answer (its request future was dropped): recorded as
    /// 499, with no tokens or cost known. The charge (dropped with the meter) releases its
    /// slots and keeps its reservations, since the upstream may have billed the call.
    fn drop(&mut self) {
        if !self.finish() {
            return;
        }
        let labels = RequestLabels { endpoint: self.endpoint.as_str(), model: "unknown", provider: "none" };
        metrics::record_request(labels, 499, self.started.elapsed());
        let answer = Answer {
            status: 499,
            error_code: Some("client_disconnected"),
            usage: None,
            source: TokenSource::None,
            ttft: None,
            // Not known: the request future was dropped wherever it was.
            attempts: 0,
        };
        self.emit(None, None, None, None, &answer);
    }
}
