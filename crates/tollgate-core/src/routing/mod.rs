//! Routing building blocks: the per-deployment circuit breaker and live health, the strategies
//! that order an alias's deployments, and retry backoff. The pipeline's `route` and
//! `call_with_fallback` steps put them together.

pub mod backoff;
pub mod breaker;
pub mod health;
pub mod strategy;

pub use backoff::Backoff;
pub use breaker::{Admit, Breaker, BreakerConfig, BreakerState};
pub use health::{Availability, DeploymentHealth, HealthConfig, HealthSnapshot, InFlight, Outcome};
pub use strategy::{Candidate, Selector, Strategy};
