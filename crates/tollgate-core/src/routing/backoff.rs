//! How long to wait before retrying a deployment: exponential backoff with full jitter, never
//! shorter than the upstream's `Retry-After`.
//!
//! Full jitter (a uniform draw between zero and the exponential ceiling) rather than a fixed
//! delay: when an upstream hiccups, every request in flight fails at once, and identical delays
//! would send all their retries back at once too. Spreading them uniformly gives the upstream
//! the least synchronised load for the same mean wait.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff parameters for retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay; it doubles with each further retry.
    pub base: Duration,
    /// The ceiling never exceeds this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(100), max: Duration::from_secs(2) }
    }
}

impl Backoff {
    /// The largest delay retry number `retry` (0 for the first retry) can draw:
    /// `min(max, base × 2^retry)`, saturating instead of overflowing for large `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `retry` (0 for the first retry): uniform in
    /// `[0, ceiling(retry)]`, raised to `retry_after` when the upstream sent one. `retry_after`
    /// is not capped by `max`: waiting less than the upstream asked for only earns another 429.
    /// Whether a long wait still fits the request's deadline is the caller's decision.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling));
        retry_after.map_or(jittered, |floor| jittered.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// (min, max, mean) of `n` draws for `retry`.
    fn draws(
        backoff: &Backoff,
        retry: u32,
        retry_after: Option<Duration>,
        n: u32,
    ) -> (Duration, Duration, Duration) {
        let mut rng = StdRng::seed_from_u64(42);
        let all: Vec<Duration> = (0..n).map(|_| backoff.delay(retry, retry_after, &mut rng)).collect();
        let min = all.iter().copied().min().unwrap();
        let max = all.iter().copied().max().unwrap();
        (min, max, all.iter().sum::<Duration>() / n)
    }

    #[test]
    fn draws_stay_within_zero_and_the_ceiling_and_spread_over_it() {
        let backoff = Backoff::default();
        for retry in 0..6 {
            let ceiling = backoff.ceiling(retry);
            let (min, max, mean) = draws(&backoff, retry, None, 10_000);
            assert!(max <= ceiling, "retry {retry}: {max:?} > {ceiling:?}");
            assert!(min < ceiling / 50 && max > ceiling * 49 / 50, "retry {retry}: {min:?}..{max:?}");
            let half = ceiling / 2;
            assert!(mean > half * 95 / 100 && mean < half * 105 / 100, "retry {retry}: mean {mean:?}");
        }
    }

    #[test]
    fn the_ceiling_doubles_then_caps_at_max() {
        let backoff = Backoff::default();
        let ceilings: Vec<Duration> = (0..7).map(|r| backoff.ceiling(r)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000].map(ms));
    }

    #[test]
    fn large_retry_numbers_do_not_overflow() {
        let backoff = Backoff { base: Duration::from_secs(u64::MAX / 2), max: Duration::MAX };
        for retry in [31, 32, 64, 1000, u32::MAX] {
            assert_eq!(Backoff::default().ceiling(retry), ms(2000));
            assert_eq!(backoff.ceiling(retry), Duration::MAX);
            let mut rng = StdRng::seed_from_u64(1);
            assert!(Backoff::default().delay(retry, None, &mut rng) <= ms(2000));
            let _ = backoff.delay(retry, None, &mut rng);
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let backoff = Backoff::default();
        let (min, _, _) = draws(&backoff, 2, Some(ms(300)), 1000);
        assert_eq!(min, ms(300), "draws under 300 ms are raised to it");
        let (min, max, _) = draws(&backoff, 0, Some(ms(5000)), 100);
        assert_eq!((min, max), (ms(5000), ms(5000)), "beyond max it is still honoured");
    }

    #[test]
    fn a_zero_base_means_no_wait() {
        let backoff = Backoff { base: Duration::ZERO, ..Backoff::default() };
        assert_eq!(draws(&backoff, 3, None, 10), (Duration::ZERO, Duration::ZERO, Duration::ZERO));
    }
}
