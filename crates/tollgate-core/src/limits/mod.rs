//! Rate limits and budgets: the in-memory [`MemoryRateLimiter`] (single node, the default), the
//! [`FailurePolicy`] wrapper for remote limiters, the pure bucket arithmetic both backends
//! share ([`gcra`]), and (with the `test-util` feature) the contract suite every
//! [`tollgate_types::ports::RateLimiter`] must pass.
//!
//! The pipeline uses them through the [`Enforcer`]: a [`Plan`] lists the limits a request falls
//! under (key, project, tenant, per model alias, deployment), admission reserves them all at
//! once, and the request's end settles the [`Charge`] with the real tokens and cost.

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
pub mod enforcer;
pub mod gcra;
pub mod memory;
pub mod plan;
pub mod policy;

pub use enforcer::{Charge, Enforcer, Headroom, RateLimitHeaders, SettleWorker};
pub use memory::MemoryRateLimiter;
pub use plan::{Estimate, Plan, ScopeLimits};
pub use policy::{FailurePolicy, PolicyRateLimiter};

use std::time::Duration;

/// How long a concurrency slot is held at most when it is never released (a crashed or
/// forgotten request): after this it expires and frees its slot.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(600);

/// The `retry_after` given when no concurrency slot is free: a slot frees whenever any in-flight
/// request ends, which cannot be predicted, so clients are told to retry soon.
pub const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);
