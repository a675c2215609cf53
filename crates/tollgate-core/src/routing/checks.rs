//! Active health checks (`routing.health_check_interval`, off by default): a one-token chat
//! request to every deployment at the interval, fed to its breaker like real traffic. Their
//! worth is the half-open state: a check is the probe, so a recovered deployment closes its
//! breaker without a user's request being the one risked on it. They cost a token per
//! deployment per interval on the gateway's own credentials, which is why they are opt-in.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tollgate_types::chat::Role;
use tollgate_types::ports::{CallCtx, ProviderErrorKind, QuotaCell};
use tollgate_types::{ChatRequest, Message};

use super::{Availability, Outcome};
use crate::pipeline::Gateway;
use crate::registry::Deployment;

/// Bound on one check; a deployment slower than this to answer one token counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks made, by `deployment` and `outcome` (`ok`, `failed`, `rate_limited`).
pub const HEALTH_CHECKS: &str = "tollgate_health_checks_total";

/// Checks every deployment each `interval` until `shutdown`.
pub async fn run(gateway: Arc<Gateway>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut seen = HashSet::new();
        let deployments: Vec<Arc<Deployment>> = gateway
            .routes()
            .flat_map(|r| r.deployments.iter().cloned())
            .filter(|d| seen.insert(d.index))
            .collect();
        let checks = deployments.iter().map(|d| check(d));
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = futures::future::join_all(checks) => {}
        }
    }
}

/// One check of `d`, unless its breaker is open and still cooling down (then traffic and the
/// next tick decide).
async fn check(d: &Deployment) {
    let (availability, change) = d.health.admit(Instant::now());
    super::note_breaker(d, change);
    let probe = match availability {
        Availability::Ready => false,
        Availability::Probe => true,
        Availability::CoolingDown { .. } | Availability::Open { .. } => return,
    };
    let call = CallCtx {
        upstream_model: d.upstream_model.clone(),
        request_id: format!("health-check-{}", uuid::Uuid::now_v7()),
        first_byte_timeout: CHECK_TIMEOUT,
        total_timeout: CHECK_TIMEOUT,
        include_usage: false,
        quota: QuotaCell::default(),
    };
    let started = Instant::now();
    let result = d.adapter.chat(&ping(&d.upstream_model), &call).await;
    d.health.observe_quota_cell(Instant::now(), &call.quota);
    let (outcome, label) = match &result {
        Ok(_) => (Outcome::Success { ttft: None, total: started.elapsed() }, "ok"),
        Err(e) if e.kind == ProviderErrorKind::RateLimited => {
            (Outcome::RateLimited { retry_after: e.retry_after }, "rate_limited")
        }
        // A missing key or a refused ping says nothing about the upstream's health.
        Err(e)
            if matches!(
                e.kind,
                ProviderErrorKind::MissingCredential { .. } | ProviderErrorKind::BadRequest
            ) =>
        {
            (Outcome::Neutral, "skipped")
        }
        Err(_) => (Outcome::Failure, "failed"),
    };
    if let Err(e) = &result {
        tracing::info!(deployment = %d.name, error = %e, "health check failed");
    }
    super::note_breaker(d, d.health.record(Instant::now(), outcome, probe));
    metrics::counter!(HEALTH_CHECKS, "deployment" => d.label.clone(), "outcome" => label).increment(1);
}

/// The smallest chat request: one user word, one output token.
fn ping(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message::text(Role::User, "ping")],
        max_tokens: Some(1),
        ..ChatRequest::default()
    }
}
