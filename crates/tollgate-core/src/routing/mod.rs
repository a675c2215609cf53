//! Routing building blocks: the per-deployment circuit breaker and live health, the strategies
//! that order an alias's deployments, and retry backoff. The pipeline's `route` and
//! `call_with_fallback` steps put them together.

pub mod backoff;
pub mod breaker;
pub mod checks;
pub mod health;
pub mod strategy;

pub use backoff::Backoff;
pub use breaker::{Admit, Breaker, BreakerConfig, BreakerState};
pub use health::{Availability, DeploymentHealth, HealthConfig, HealthSnapshot, InFlight, Outcome};
pub use strategy::{Candidate, Selector, Strategy};

/// Circuit-breaker state changes by `deployment` and `to`.
pub const BREAKER_TRANSITIONS: &str = "tollgate_breaker_transitions_total";

/// Counts and logs a breaker transition of `d`, if there was one.
pub fn note_breaker(d: &crate::registry::Deployment, change: Option<BreakerState>) {
    if let Some(to) = change {
        metrics::counter!(BREAKER_TRANSITIONS, "deployment" => d.label.clone(), "to" => to.as_str())
            .increment(1);
        tracing::warn!(deployment = %d.name, to = to.as_str(), "circuit breaker changed state");
    }
}
