//! The window arithmetic shared by every backend (the Redis Lua function mirrors it line for
//! line): a GCRA expressed as a leaky bucket.
//!
//! A bucket holds `level` units, at most `limit`; it drains continuously at `limit / period`. A
//! reservation of `amount` fits when `level + amount <= limit`. A full burst of `limit` is
//! allowed from empty and capacity comes back smoothly, so there is no fixed-window double burst
//! at a boundary. All times are microseconds; levels are `f64` (exact for integer sums, and
//! drained by whole units only after the corresponding time has passed).

use std::time::Duration;

/// The bucket level after `elapsed_us` of draining.
pub fn drain(level: f64, elapsed_us: f64, limit: u64, period_us: f64) -> f64 {
    if period_us <= 0.0 {
        return 0.0;
    }
    (level - elapsed_us.max(0.0) * limit as f64 / period_us).max(0.0)
}

/// Outcome of trying `amount` against a drained bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    /// Fits: the new level, units remaining, time until empty.
    Ok { level: f64, remaining: u64, reset: Duration },
    /// Does not fit; `None` when it never can (`amount > limit`).
    No { retry_after: Option<Duration> },
}

/// Tries to add `amount` to a bucket at `level` (already drained to now).
pub fn take(level: f64, amount: u64, limit: u64, period_us: f64) -> Take {
    if amount > limit || limit == 0 {
        return Take::No { retry_after: None };
    }
    let (l, a) = (limit as f64, amount as f64);
    if level + a <= l {
        let level = level + a;
        Take::Ok {
            level,
            remaining: (l - level).floor().max(0.0) as u64,
            reset: micros(level * period_us / l),
        }
    } else {
        Take::No { retry_after: Some(micros((level + a - l) * period_us / l)) }
    }
}

/// Whole microseconds, rounded up so a client that waits this long finds room.
pub fn micros(us: f64) -> Duration {
    Duration::from_micros(us.max(0.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: f64 = 60_000_000.0;

    #[test]
    fn full_burst_then_refill_one_unit_per_interval() {
        let mut level = 0.0;
        for i in 0..20 {
            match take(level, 1, 20, MIN) {
                Take::Ok { level: l, remaining, .. } => {
                    level = l;
                    assert_eq!(remaining, 19 - i);
                }
                Take::No { .. } => unreachable!("burst of the limit fits"),
            }
        }
        assert_eq!(take(level, 1, 20, MIN), Take::No { retry_after: Some(Duration::from_secs(3)) });
        let later = drain(level, 3_000_000.0, 20, MIN);
        assert!(matches!(take(later, 1, 20, MIN), Take::Ok { remaining: 0, .. }));
        assert_eq!(drain(level, 2.0 * MIN, 20, MIN), 0.0);
    }

    #[test]
    fn amount_over_limit_never_fits() {
        assert_eq!(take(0.0, 21, 20, MIN), Take::No { retry_after: None });
    }
}
