//! Circuit breaker for one deployment: stops sending traffic to a deployment that keeps failing,
//! so requests fall through to the next candidate at once instead of each waiting on a broken
//! upstream, and lets a few probe requests find out when it has recovered.
//!
//! Closed → Open when failures pile up (a run of consecutive failures, or a failure ratio over a
//! rolling window once it holds enough requests); Open → HalfOpen when the cooldown has passed;
//! HalfOpen → Closed on a probe success, → Open on a probe failure.
//!
//! [`Breaker`] is a plain state machine with time passed in (`now`), so it has no clock, no lock
//! and no I/O: [`super::health::DeploymentHealth`] holds it under its mutex. Every call that can
//! change the state returns the transition, so the caller can count and log it.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets in the rolling window: enough that an outcome ages out within a tenth of the window
/// of its due time, few enough that the breaker stays a few hundred bytes.
const BUCKETS: usize = 10;

/// When a deployment's breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Failure ratio over the window that opens the breaker (0.5 = half the requests failed).
    pub failure_rate: f64,
    /// Outcomes the window must hold before `failure_rate` applies, so that one failure out of
    /// one request does not open it.
    pub min_requests: u32,
    /// How far back the failure ratio looks.
    pub window: Duration,
    /// Failures in a row that open the breaker whatever the ratio (0 turns this trigger off).
    pub consecutive_failures: u32,
    /// How long the breaker stays open before probing.
    pub cooldown: Duration,
    /// Probe requests let through at a time while half-open (0 is taken as 1: a breaker that
    /// never probes would never close).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(30),
            consecutive_failures: 5,
            cooldown: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// What [`Breaker::try_acquire`] decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: send it; report the outcome with `probe: false`.
    Allowed,
    /// Half-open: send it as a probe; report the outcome (or [`Breaker::release_probe`]) with
    /// `probe: true`, else the slot stays taken until it is presumed lost (one cooldown).
    Probe,
    /// Open, or half-open with every probe slot taken: skip this deployment until `until`.
    Rejected { until: Instant },
}

/// The breaker's state as seen from outside (metrics, admin API, transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

impl BreakerState {
    /// The metric label / admin API value: `closed`, `open` or `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// `now + d`, saturating instead of panicking on an absurd configured duration.
pub(super) fn instant_after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

// === impl Breaker ===

/// One deployment's circuit breaker. Not thread-safe by itself: the caller holds it in a mutex.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    window: Window,
    /// Failures since the last success while closed.
    consecutive: u32,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes_out: u32, last_probe: Instant },
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, phase: Phase::Closed, window: Window::new(config.window), consecutive: 0 }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Decides whether a request may go to this deployment now. Only a `Probe` answer takes a
    /// probe slot. The transition is `Some(HalfOpen)` when the cooldown just ran out.
    #[must_use]
    pub fn try_acquire(&mut self, now: Instant) -> (Admit, Option<BreakerState>) {
        let transition = self.half_open_if_due(now);
        let admit = match &mut self.phase {
            Phase::Closed => Admit::Allowed,
            Phase::Open { until } => Admit::Rejected { until: *until },
            Phase::HalfOpen { probes_out, last_probe } => {
                take_probe(&self.config, probes_out, last_probe, now)
            }
        };
        (admit, transition)
    }

    /// Reports a successful request. A probe success closes the breaker with a fresh window.
    /// Results of requests admitted before the breaker opened are ignored while it is open or
    /// half-open: they describe the upstream before the cooldown, not now.
    pub fn on_success(&mut self, now: Instant, probe: bool) -> Option<BreakerState> {
        match self.phase {
            Phase::Closed => {
                self.window.record(now, false);
                self.consecutive = 0;
                None
            }
            Phase::HalfOpen { .. } if probe => Some(self.close()),
            Phase::Open { .. } | Phase::HalfOpen { .. } => None,
        }
    }

    /// Reports a failed request (the upstream's fault: 5xx, timeout, connection error). May open
    /// the breaker; a probe failure re-opens it for another cooldown.
    pub fn on_failure(&mut self, now: Instant, probe: bool) -> Option<BreakerState> {
        match self.phase {
            Phase::Closed => {
                self.window.record(now, true);
                self.consecutive = self.consecutive.saturating_add(1);
                self.should_trip(now).then(|| self.open(now))
            }
            Phase::HalfOpen { .. } if probe => Some(self.open(now)),
            Phase::Open { .. } | Phase::HalfOpen { .. } => None,
        }
    }

    /// Frees a probe slot without deciding anything: the probe ended in a way that says nothing
    /// about the upstream's health (the client's own 400, a 429, a cancelled request).
    pub fn release_probe(&mut self) {
        if let Phase::HalfOpen { probes_out, .. } = &mut self.phase {
            *probes_out = probes_out.saturating_sub(1);
        }
    }

    /// The state at `now`, without changing anything: an open breaker whose cooldown has passed
    /// reads as half-open even before the next [`Self::try_acquire`] moves it there.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open { until },
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn half_open_if_due(&mut self, now: Instant) -> Option<BreakerState> {
        match self.phase {
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen { probes_out: 0, last_probe: until };
                Some(BreakerState::HalfOpen)
            }
            _ => None,
        }
    }

    fn should_trip(&self, now: Instant) -> bool {
        let consecutive = self.config.consecutive_failures;
        if consecutive > 0 && self.consecutive >= consecutive {
            return true;
        }
        let (total, failures) = self.window.counts(now);
        total >= self.config.min_requests.max(1)
            && f64::from(failures) / f64::from(total) >= self.config.failure_rate
    }

    fn open(&mut self, now: Instant) -> BreakerState {
        let until = instant_after(now, self.config.cooldown);
        self.phase = Phase::Open { until };
        self.reset_counts();
        BreakerState::Open { until }
    }

    fn close(&mut self) -> BreakerState {
        self.phase = Phase::Closed;
        self.reset_counts();
        BreakerState::Closed
    }

    /// Outcomes from before an opening must not count again once it closes.
    fn reset_counts(&mut self) {
        self.window.clear();
        self.consecutive = 0;
    }
}

/// Grants a half-open probe slot if one is free.
fn take_probe(config: &BreakerConfig, probes_out: &mut u32, last_probe: &mut Instant, now: Instant) -> Admit {
    let limit = config.half_open_probes.max(1);
    // A probe whose outcome never came back (a caller that forgot to report, a task that was
    // dropped) would keep the breaker half-open forever; after one cooldown its slot is presumed
    // lost. A genuinely slow probe then runs alongside a new one, which is harmless.
    let lost_after = instant_after(*last_probe, config.cooldown);
    if *probes_out >= limit && now >= lost_after {
        *probes_out = 0;
    }
    if *probes_out < limit {
        *probes_out += 1;
        *last_probe = now;
        Admit::Probe
    } else {
        Admit::Rejected { until: lost_after }
    }
}

// === impl Window ===

/// Outcomes of the last `window`, in `BUCKETS` time buckets reused in a ring: memory stays
/// fixed whatever the traffic, and a bucket older than the window is simply overwritten.
#[derive(Debug, Clone)]
struct Window {
    bucket_width: Duration,
    /// Bucket indices count bucket widths from here (the first outcome recorded).
    origin: Option<Instant>,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-width interval since `origin` these counts belong to.
    index: Option<u64>,
    successes: u32,
    failures: u32,
}

impl Window {
    fn new(window: Duration) -> Self {
        let bucket_width = (window / BUCKETS as u32).max(Duration::from_nanos(1));
        Self { bucket_width, origin: None, buckets: [Bucket::default(); BUCKETS] }
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let origin = *self.origin.get_or_insert(now);
        let index = self.index(origin, now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if bucket.index != Some(index) {
            *bucket = Bucket { index: Some(index), successes: 0, failures: 0 };
        }
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        } else {
            bucket.successes = bucket.successes.saturating_add(1);
        }
    }

    /// (outcomes, failures) in the buckets still inside the window at `now`.
    fn counts(&self, now: Instant) -> (u32, u32) {
        let Some(origin) = self.origin else { return (0, 0) };
        let current = self.index(origin, now);
        let live = |b: &&Bucket| b.index.is_some_and(|i| i <= current && i + BUCKETS as u64 > current);
        self.buckets.iter().filter(live).fold((0u32, 0u32), |(total, failures), b| {
            (
                total.saturating_add(b.successes).saturating_add(b.failures),
                failures.saturating_add(b.failures),
            )
        })
    }

    fn index(&self, origin: Instant, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(elapsed / self.bucket_width.as_nanos()).unwrap_or(u64::MAX)
    }

    fn clear(&mut self) {
        self.origin = None;
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    /// Opens a default breaker at `now` with five consecutive failures.
    fn opened(now: Instant) -> Breaker {
        let mut b = breaker();
        for _ in 0..5 {
            let _ = b.on_failure(now, false);
        }
        assert_eq!(b.state(now), BreakerState::Open { until: now + secs(30) });
        b
    }

    #[test]
    fn opens_on_consecutive_failures() {
        let now = Instant::now();
        let mut b = breaker();
        for _ in 0..4 {
            assert_eq!(b.on_failure(now, false), None);
        }
        assert_eq!(b.try_acquire(now), (Admit::Allowed, None));
        assert_eq!(b.on_failure(now, false), Some(BreakerState::Open { until: now + secs(30) }));
        assert_eq!(b.try_acquire(now), (Admit::Rejected { until: now + secs(30) }, None));
        assert_eq!(b.state(now).as_str(), "open");
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let now = Instant::now();
        let mut b = Breaker::new(BreakerConfig { min_requests: 1000, ..BreakerConfig::default() });
        for _ in 0..10 {
            for _ in 0..4 {
                let _ = b.on_failure(now, false);
            }
            let _ = b.on_success(now, false);
        }
        assert_eq!(b.state(now), BreakerState::Closed);
    }

    #[test]
    fn opens_on_rate_only_after_min_requests() {
        let now = Instant::now();
        let mut b = Breaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        // Alternating outcomes: a 50% failure rate from the first failure on.
        for _ in 0..4 {
            assert_eq!(b.on_failure(now, false), None);
            assert_eq!(b.on_success(now, false), None);
        }
        assert_eq!(b.on_failure(now, false), None, "9 outcomes, below min_requests");
        let opened = b.on_failure(now, false);
        assert_eq!(opened, Some(BreakerState::Open { until: now + secs(30) }), "10 outcomes, 6 failed");
    }

    #[test]
    fn a_low_failure_rate_stays_closed() {
        let now = Instant::now();
        let mut b = Breaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        for _ in 0..100 {
            let _ = b.on_failure(now, false);
            for _ in 0..2 {
                let _ = b.on_success(now, false);
            }
        }
        assert_eq!(b.state(now), BreakerState::Closed);
    }

    #[test]
    fn old_failures_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        for _ in 0..9 {
            let _ = b.on_failure(t0, false);
        }
        // Past the window, the nine failures no longer count: one more is 1 outcome, not 10.
        let later = t0 + secs(31);
        assert_eq!(b.on_failure(later, false), None);
        for _ in 0..8 {
            assert_eq!(b.on_success(later, false), None);
        }
        assert_eq!(b.state(later), BreakerState::Closed);
        // Inside the window they do count.
        let mut b = Breaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        for _ in 0..9 {
            let _ = b.on_failure(t0, false);
        }
        assert!(b.on_failure(t0 + secs(20), false).is_some());
    }

    #[test]
    fn half_opens_after_cooldown_and_admits_only_n_probes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig { half_open_probes: 2, ..BreakerConfig::default() });
        for _ in 0..5 {
            let _ = b.on_failure(t0, false);
        }
        let t1 = t0 + secs(30);
        assert_eq!(b.state(t1), BreakerState::HalfOpen, "reads half-open once the cooldown is over");
        assert_eq!(b.try_acquire(t1), (Admit::Probe, Some(BreakerState::HalfOpen)));
        assert_eq!(b.try_acquire(t1), (Admit::Probe, None));
        assert_eq!(b.try_acquire(t1), (Admit::Rejected { until: t1 + secs(30) }, None));
        assert_eq!(b.state(t1).as_str(), "half_open");
    }

    #[test]
    fn probe_success_closes_with_a_fresh_window() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1).0, Admit::Probe);
        assert_eq!(b.on_success(t1, true), Some(BreakerState::Closed));
        assert_eq!(b.try_acquire(t1), (Admit::Allowed, None));
        // The failures that opened it are gone: four more do not re-open it.
        for _ in 0..4 {
            assert_eq!(b.on_failure(t1, false), None);
        }
    }

    #[test]
    fn probe_failure_reopens_for_another_cooldown() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1).0, Admit::Probe);
        assert_eq!(b.on_failure(t1, true), Some(BreakerState::Open { until: t1 + secs(30) }));
        assert_eq!(b.try_acquire(t1 + secs(29)).0, Admit::Rejected { until: t1 + secs(30) });
        assert_eq!(b.try_acquire(t1 + secs(30)).0, Admit::Probe);
    }

    #[test]
    fn neutral_release_frees_the_probe_slot_without_deciding() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1).0, Admit::Probe);
        assert!(matches!(b.try_acquire(t1).0, Admit::Rejected { .. }));
        b.release_probe();
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(t1), (Admit::Probe, None));
    }

    #[test]
    fn late_results_of_earlier_requests_do_not_decide() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        assert_eq!(b.on_success(t0, false), None);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1).0, Admit::Probe);
        assert_eq!(b.on_success(t1, false), None);
        assert_eq!(b.on_failure(t1, false), None);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
    }

    #[test]
    fn a_lost_probe_is_presumed_gone_after_a_cooldown() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + secs(30);
        assert_eq!(b.try_acquire(t1).0, Admit::Probe);
        assert_eq!(b.try_acquire(t1 + secs(29)).0, Admit::Rejected { until: t1 + secs(30) });
        assert_eq!(b.try_acquire(t1 + secs(30)).0, Admit::Probe);
    }

    #[test]
    fn zero_probes_is_taken_as_one() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig { half_open_probes: 0, ..BreakerConfig::default() });
        for _ in 0..5 {
            let _ = b.on_failure(t0, false);
        }
        assert_eq!(b.try_acquire(t0 + secs(30)).0, Admit::Probe);
    }
}
