//! What happens when a remote limiter (Redis) cannot be reached: [`FailurePolicy::Open`] admits
//! the request unchecked (a warning log line and the `tollgate_limiter_unavailable_total` metric
//! each time), [`FailurePolicy::Closed`] refuses it with the `Unavailable` error. Limits that were
//! hit (`Exceeded`) pass through unchanged under both policies.

use std::sync::Arc;

use async_trait::async_trait;
use tollgate_types::ports::{Adjustment, Admission, LimitError, LimitStatus, RateLimiter, Reservation};

/// Calls the limiter could not make, by `op` (`reserve`, `settle`) and `policy` (`open`,
/// `closed`).
pub const LIMITER_UNAVAILABLE: &str = "tollgate_limiter_unavailable_total";

/// What to do when the limiter's backend is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit (availability over enforcement). The default.
    #[default]
    Open,
    /// Refuse (enforcement over availability).
    Closed,
}

impl FailurePolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// Wraps a limiter with a [`FailurePolicy`].
pub struct PolicyRateLimiter {
    inner: Arc<dyn RateLimiter>,
    policy: FailurePolicy,
}

impl PolicyRateLimiter {
    pub fn new(inner: Arc<dyn RateLimiter>, policy: FailurePolicy) -> Self {
        Self { inner, policy }
    }

    fn count(&self, op: &'static str, err: &str) {
        metrics::counter!(LIMITER_UNAVAILABLE, "op" => op, "policy" => self.policy.as_str()).increment(1);
        match self.policy {
            FailurePolicy::Open => tracing::warn!(op, error = %err, "rate limiter unavailable; failing open"),
            FailurePolicy::Closed => {
                tracing::warn!(op, error = %err, "rate limiter unavailable; failing closed")
            }
        }
    }
}

#[async_trait]
impl RateLimiter for PolicyRateLimiter {
    async fn reserve(&self, reqs: &[Reservation]) -> Result<Admission, LimitError> {
        match self.inner.reserve(reqs).await {
            Err(LimitError::Unavailable(e)) => {
                self.count("reserve", &e);
                match self.policy {
                    FailurePolicy::Closed => Err(LimitError::Unavailable(e)),
                    FailurePolicy::Open => Ok(Admission {
                        limits: reqs
                            .iter()
                            .map(|r| LimitStatus {
                                name: r.name.clone(),
                                limit: r.limit,
                                remaining: r.limit.saturating_sub(r.amount),
                                reset_after: None,
                            })
                            .collect(),
                        degraded: true,
                    }),
                }
            }
            other => other,
        }
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), LimitError> {
        match self.inner.settle(adjustments).await {
            Err(LimitError::Unavailable(e)) => {
                self.count("settle", &e);
                match self.policy {
                    FailurePolicy::Closed => Err(LimitError::Unavailable(e)),
                    FailurePolicy::Open => Ok(()),
                }
            }
            other => other,
        }
    }

    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_types::ports::LimitKind;

    use super::*;
    use crate::limits::MemoryRateLimiter;

    struct Down;

    #[async_trait]
    impl RateLimiter for Down {
        async fn reserve(&self, _: &[Reservation]) -> Result<Admission, LimitError> {
            Err(LimitError::Unavailable("connection refused".into()))
        }
        async fn settle(&self, _: &[Adjustment]) -> Result<(), LimitError> {
            Err(LimitError::Unavailable("connection refused".into()))
        }
    }

    fn one() -> Vec<Reservation> {
        vec![Reservation {
            key: "k".into(),
            kind: LimitKind::Window { period: Duration::from_secs(60) },
            limit: 1,
            amount: 1,
            name: "rpm".into(),
        }]
    }

    #[tokio::test]
    async fn open_admits_degraded_closed_refuses() {
        let open = PolicyRateLimiter::new(Arc::new(Down), FailurePolicy::Open);
        let a = open.reserve(&one()).await.unwrap();
        assert!(a.degraded);
        assert_eq!(a.limits[0].remaining, 0);
        open.settle(&[]).await.unwrap();

        let closed = PolicyRateLimiter::new(Arc::new(Down), FailurePolicy::Closed);
        assert!(matches!(closed.reserve(&one()).await, Err(LimitError::Unavailable(_))));
        assert!(matches!(closed.settle(&[]).await, Err(LimitError::Unavailable(_))));
    }

    #[tokio::test]
    async fn exceeded_passes_through_under_open() {
        let open = PolicyRateLimiter::new(Arc::new(MemoryRateLimiter::default()), FailurePolicy::Open);
        assert!(!open.reserve(&one()).await.unwrap().degraded);
        assert!(matches!(open.reserve(&one()).await, Err(LimitError::Exceeded { .. })));
    }
}
