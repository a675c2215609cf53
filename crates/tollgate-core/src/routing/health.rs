//! The live state of one deployment, as routing sees it: its circuit breaker, a 429 cooldown,
//! requests in flight, latency estimates, the provider's remaining rate-limit headroom and
//! outcome counters.
//!
//! The router asks [`DeploymentHealth::admit`] before an attempt, wraps the attempt in
//! [`DeploymentHealth::begin`]'s guard and reports the result with [`DeploymentHealth::record`];
//! the strategies read [`DeploymentHealth::latency_score`], [`DeploymentHealth::headroom`] and
//! [`DeploymentHealth::in_flight`]; `GET /admin/v1/deployments` shows
//! [`DeploymentHealth::snapshot`]. State is per gateway node, in memory: each node learns about
//! an upstream from its own traffic, which is fast and needs no shared store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tollgate_types::ports::{ProviderQuota, QuotaCell};

use super::breaker::{Admit, Breaker, BreakerConfig, BreakerState, instant_after};

/// How long a 429 without `Retry-After` keeps the deployment aside.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest cooldown a `Retry-After` can impose: beyond this a misbehaving (or hostile)
/// header would take a deployment out for hours.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(5 * 60);
/// How long a rate-limit header reading stays valid: providers' windows are about a minute, so
/// an older reading describes a window that has since reset.
pub const HEADROOM_TTL: Duration = Duration::from_secs(60);

/// Tuning for [`DeploymentHealth`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    pub breaker: BreakerConfig,
    /// Weight of the newest latency sample in the moving averages, in (0, 1]; out-of-range
    /// values fall back to the default.
    pub ewma_alpha: f64,
    /// Age of the last latency sample after which the estimate decays (and its half-life); zero
    /// turns the decay off.
    pub stale_after: Duration,
    /// Share of latency-routed requests sent to a random other deployment to keep measuring it;
    /// read by the alias's [`super::strategy::Selector`], kept here with the other tuning.
    pub explore_rate: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            ewma_alpha: 0.3,
            stale_after: Duration::from_secs(30),
            explore_rate: 0.01,
        }
    }
}

/// Whether a deployment may take a request now ([`DeploymentHealth::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// A half-open probe was granted: report its outcome with `probe: true`.
    Probe,
    /// Rate-limited by the provider (a 429) until `until`.
    CoolingDown {
        until: Instant,
    },
    /// The breaker is open (or half-open with its probe slots taken) until `until`.
    Open {
        until: Instant,
    },
}

impl Availability {
    /// Whether the request may be sent (`Ready` or `Probe`).
    pub fn is_admitted(&self) -> bool {
        matches!(self, Self::Ready | Self::Probe)
    }
}

/// How one attempt on this deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered. `ttft` is the time to the first token of a stream (`None` for a
    /// non-streaming call), `total` the time to the end of the response.
    Success { ttft: Option<Duration>, total: Duration },
    /// The upstream's fault: 5xx, timeout, connection error, broken stream.
    Failure,
    /// The provider said 429. Not a breaker failure (the upstream is healthy, only busy): the
    /// deployment cools down instead.
    RateLimited { retry_after: Option<Duration> },
    /// Says nothing about the upstream (the client's own 400, a cancelled request).
    Neutral,
    /// The attempt lost a hedged race and was cancelled after `elapsed` without an answer
    /// (`streaming`: without a first chunk). Not a failure, but the deployment is at least that
    /// slow now: `elapsed` goes into its latency estimate as a sample, so latency routing stops
    /// preferring a deployment that only ever loses races (it would otherwise get no sample at
    /// all, and its old estimate would even decay towards the front).
    Abandoned { elapsed: Duration, streaming: bool },
}

// === impl DeploymentHealth ===

/// One deployment's live state, shared as `Arc` by every request routed to it.
#[derive(Debug)]
pub struct DeploymentHealth {
    config: HealthConfig,
    /// Outside the mutex: the guard's drop and least-busy routing touch it on every request.
    in_flight: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    breaker: Breaker,
    cooldown_until: Option<Instant>,
    latency: Latency,
    headroom: Headroom,
    successes: u64,
    failures: u64,
    rate_limited: u64,
    last_error: Option<Instant>,
}

impl DeploymentHealth {
    pub fn new(config: HealthConfig) -> Self {
        let alpha = config.ewma_alpha;
        let ewma_alpha = if alpha.is_finite() && alpha > 0.0 && alpha <= 1.0 {
            alpha
        } else {
            HealthConfig::default().ewma_alpha
        };
        let config = HealthConfig { ewma_alpha, ..config };
        let state = State {
            breaker: Breaker::new(config.breaker),
            cooldown_until: None,
            latency: Latency::default(),
            headroom: Headroom::default(),
            successes: 0,
            failures: 0,
            rate_limited: 0,
            last_error: None,
        };
        Self { config, in_flight: AtomicU64::new(0), state: Mutex::new(state) }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Counts a request in flight until the returned guard drops (on any exit path, including
    /// cancellation).
    #[must_use = "the request counts as in flight only while the guard lives"]
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { health: Arc::clone(self) }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Decides whether a request may go here now. Takes a half-open probe slot only when it
    /// answers `Probe`. The transition, if any, is the breaker's (Open → HalfOpen), for the
    /// caller to count and log.
    #[must_use]
    pub fn admit(&self, now: Instant) -> (Availability, Option<BreakerState>) {
        let mut state = self.state.lock();
        if let Some(skip) = state.unavailable(now) {
            return (skip, None);
        }
        let (admit, transition) = state.breaker.try_acquire(now);
        let availability = match admit {
            Admit::Allowed => Availability::Ready,
            Admit::Probe => Availability::Probe,
            Admit::Rejected { until } => Availability::Open { until },
        };
        (availability, transition)
    }

    /// Reports how an attempt ended; `probe` is whether [`Self::admit`] answered `Probe` for
    /// it. Returns the breaker transition it caused, if any.
    pub fn record(&self, now: Instant, outcome: Outcome, probe: bool) -> Option<BreakerState> {
        let mut state = self.state.lock();
        match outcome {
            Outcome::Success { ttft, total } => {
                state.successes = state.successes.saturating_add(1);
                state.latency.observe(now, ttft, total, self.config.ewma_alpha);
                state.breaker.on_success(now, probe)
            }
            Outcome::Failure => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(now);
                state.breaker.on_failure(now, probe)
            }
            Outcome::RateLimited { retry_after } => {
                state.rate_limited = state.rate_limited.saturating_add(1);
                state.cool_down(now, retry_after);
                state.release_probe_if(probe);
                None
            }
            Outcome::Neutral => {
                state.release_probe_if(probe);
                None
            }
            Outcome::Abandoned { elapsed, streaming } => {
                let ttft = streaming.then_some(elapsed);
                state.latency.observe(now, ttft, elapsed, self.config.ewma_alpha);
                state.release_probe_if(probe);
                None
            }
        }
    }

    /// The latency to rank this deployment by: the moving average of time to first token (of
    /// total time when no stream was measured), decayed once stale. `None` before any success.
    ///
    /// Why decay: a deployment that was slow once ranks last under latency routing, so it gets
    /// no traffic and never a new sample; its old estimate would keep it out for good even after
    /// the upstream recovered. Halving the estimate every `stale_after` without samples brings it
    /// back to the front after a while, where one request re-measures it. The cost is that a
    /// deployment that is still slow gets a request now and then; exploration alone (a few
    /// percent, spread over every other deployment) would take much longer to notice recovery.
    pub fn latency_score(&self, now: Instant) -> Option<Duration> {
        self.state.lock().latency.score(now, self.config.stale_after)
    }

    /// Stores what the deployment's own `limits` (the gateway's counters) have left after an
    /// attempt's reservation, as (remaining, limit) pairs for requests and tokens. A missing
    /// pair or a zero limit leaves the previous reading of that kind in place.
    pub fn observe_headroom(&self, now: Instant, requests: Option<(u64, u64)>, tokens: Option<(u64, u64)>) {
        self.state.lock().headroom.own.observe(now, requests, tokens);
    }

    /// Stores what the upstream itself said about its quota (its rate-limit response headers,
    /// see [`ProviderQuota`]). Kept apart from [`Self::observe_headroom`]'s readings, so that
    /// neither source overwrites the other: [`Self::headroom`] takes the tighter of the two.
    pub fn observe_provider_quota(&self, now: Instant, quota: ProviderQuota) {
        self.state.lock().headroom.provider.observe(now, quota.requests, quota.tokens);
    }

    /// Moves the reading an attempt's adapter left in `cell`, if any, into this deployment's
    /// headroom (see [`Self::observe_provider_quota`]). Called by the router after each attempt.
    pub fn observe_quota_cell(&self, now: Instant, cell: &QuotaCell) {
        if let Some(quota) = cell.take() {
            self.observe_provider_quota(now, quota);
        }
    }

    /// The smallest remaining fraction (0 = exhausted, 1 = untouched) among the requests and
    /// tokens readings of both sources (the deployment's own limits and the provider's headers),
    /// from readings younger than [`HEADROOM_TTL`]; `None` when there is none.
    pub fn headroom(&self, now: Instant) -> Option<f64> {
        self.state.lock().headroom.current(now)
    }

    /// Everything above at `now`, for the admin API.
    pub fn snapshot(&self, now: Instant) -> HealthSnapshot {
        let state = self.state.lock();
        let breaker = state.breaker.state(now);
        let open_until_ms = match breaker {
            BreakerState::Open { until } => Some(ms_between(now, until)),
            BreakerState::Closed | BreakerState::HalfOpen => None,
        };
        HealthSnapshot {
            breaker: breaker.as_str(),
            open_until_ms,
            cooling_down_ms: state.cooling_until(now).map(|until| ms_between(now, until)),
            in_flight: self.in_flight(),
            ewma_ttft_ms: state.latency.ttft.map(secs_to_ms),
            ewma_total_ms: state.latency.total.map(secs_to_ms),
            latency_score_ms: state
                .latency
                .score(now, self.config.stale_after)
                .map(|d| secs_to_ms(d.as_secs_f64())),
            headroom: state.headroom.current(now),
            successes: state.successes,
            failures: state.failures,
            rate_limited: state.rate_limited,
            last_error_ms_ago: state.last_error.map(|at| ms_between(at, now)),
        }
    }
}

impl State {
    /// Why the deployment must be skipped without asking the breaker (so no probe is taken):
    /// a 429 cooldown, or an open breaker whose end is later than the cooldown's.
    fn unavailable(&self, now: Instant) -> Option<Availability> {
        let cooling = self.cooling_until(now)?;
        Some(match self.breaker.state(now) {
            BreakerState::Open { until } if until > cooling => Availability::Open { until },
            BreakerState::Open { .. } | BreakerState::Closed | BreakerState::HalfOpen => {
                Availability::CoolingDown { until: cooling }
            }
        })
    }

    fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.cooldown_until.filter(|until| *until > now)
    }

    /// Extends (never shortens) the cooldown: a later 429 with a short `Retry-After` does not
    /// cancel an earlier, longer one.
    fn cool_down(&mut self, now: Instant, retry_after: Option<Duration>) {
        let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_COOLDOWN);
        let until = instant_after(now, wait);
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |current| current.max(until)));
    }

    fn release_probe_if(&mut self, probe: bool) {
        if probe {
            self.breaker.release_probe();
        }
    }
}

/// Marks one request in flight on a deployment; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    health: Arc<DeploymentHealth>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One deployment's health for `GET /admin/v1/deployments`. Times are relative to the moment of
/// the snapshot, in milliseconds, so they read the same on every node and need no wall clock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthSnapshot {
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Milliseconds until an open breaker starts probing.
    pub open_until_ms: Option<u64>,
    /// Milliseconds left in a 429 cooldown.
    pub cooling_down_ms: Option<u64>,
    pub in_flight: u64,
    /// Moving average of the time to first token of streams, undecayed.
    pub ewma_ttft_ms: Option<f64>,
    /// Moving average of the total response time, undecayed.
    pub ewma_total_ms: Option<f64>,
    /// What latency routing ranks by ([`DeploymentHealth::latency_score`]), decay applied.
    pub latency_score_ms: Option<f64>,
    /// Remaining quota, 0..=1: the tighter of the provider's rate-limit headers and the
    /// deployment's own limits ([`DeploymentHealth::headroom`]).
    pub headroom: Option<f64>,
    pub successes: u64,
    pub failures: u64,
    pub rate_limited: u64,
    /// Milliseconds since the last [`Outcome::Failure`] (429s are counted in `rate_limited`).
    pub last_error_ms_ago: Option<u64>,
}

fn ms_between(earlier: Instant, later: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_millis()).unwrap_or(u64::MAX)
}

fn secs_to_ms(secs: f64) -> f64 {
    secs * 1000.0
}

// === impl Latency ===

/// Exponentially weighted moving averages of latency, in seconds.
#[derive(Debug, Default)]
struct Latency {
    ttft: Option<f64>,
    total: Option<f64>,
    last_sample: Option<Instant>,
}

impl Latency {
    fn observe(&mut self, now: Instant, ttft: Option<Duration>, total: Duration, alpha: f64) {
        if let Some(ttft) = ttft {
            self.ttft = Some(ewma(self.ttft, ttft.as_secs_f64(), alpha));
        }
        self.total = Some(ewma(self.total, total.as_secs_f64(), alpha));
        self.last_sample = Some(now);
    }

    fn score(&self, now: Instant, stale_after: Duration) -> Option<Duration> {
        let estimate = self.ttft.or(self.total)?;
        let age = self.last_sample.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        Duration::try_from_secs_f64(decay(estimate, age, stale_after)).ok()
    }
}

/// The first sample is taken as is: averaging it with zero would make a new deployment look
/// fast for its first few requests.
fn ewma(previous: Option<f64>, sample: f64, alpha: f64) -> f64 {
    previous.map_or(sample, |previous| alpha * sample + (1.0 - alpha) * previous)
}

/// Halves `estimate` for every `stale_after` of `age` beyond the first `stale_after`.
fn decay(estimate: f64, age: Duration, stale_after: Duration) -> f64 {
    if stale_after.is_zero() || age <= stale_after {
        return estimate;
    }
    let half_lives = (age - stale_after).as_secs_f64() / stale_after.as_secs_f64();
    estimate * 0.5f64.powf(half_lives)
}

// === impl Headroom ===

/// The latest remaining/limit fractions of both sources. Separate because they are read at
/// different moments (the own limits before the call, the provider's headers after it): one
/// shared slot would keep whichever came last, not the tighter.
#[derive(Debug, Default)]
struct Headroom {
    /// The deployment's own `limits`, as the gateway counts them.
    own: Readings,
    /// The upstream's rate-limit response headers.
    provider: Readings,
}

impl Headroom {
    fn current(&self, now: Instant) -> Option<f64> {
        let fresh = |reading: Option<(f64, Instant)>| {
            reading.filter(|(_, at)| now.saturating_duration_since(*at) < HEADROOM_TTL).map(|(f, _)| f)
        };
        [self.own.requests, self.own.tokens, self.provider.requests, self.provider.tokens]
            .into_iter()
            .filter_map(fresh)
            .reduce(f64::min)
    }
}

/// One source's remaining/limit fractions, with when they were read.
#[derive(Debug, Default)]
struct Readings {
    requests: Option<(f64, Instant)>,
    tokens: Option<(f64, Instant)>,
}

impl Readings {
    fn observe(&mut self, now: Instant, requests: Option<(u64, u64)>, tokens: Option<(u64, u64)>) {
        if let Some(fraction) = requests.and_then(fraction) {
            self.requests = Some((fraction, now));
        }
        if let Some(fraction) = tokens.and_then(fraction) {
            self.tokens = Some((fraction, now));
        }
    }
}

/// remaining / limit, clamped to 1 (a provider may report more remaining than the limit right
/// after raising it); `None` for a zero limit, which says nothing.
fn fraction((remaining, limit): (u64, u64)) -> Option<f64> {
    (limit > 0).then(|| remaining.min(limit) as f64 / limit as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn health() -> Arc<DeploymentHealth> {
        Arc::new(DeploymentHealth::new(HealthConfig::default()))
    }

    fn success(total_ms: u64) -> Outcome {
        Outcome::Success { ttft: None, total: ms(total_ms) }
    }

    fn fail_until_open(h: &DeploymentHealth) {
        for _ in 0..5 {
            let _ = h.record(Instant::now(), Outcome::Failure, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_follows_the_guards() {
        let h = health();
        let a = h.begin();
        let b = h.begin();
        assert_eq!(h.in_flight(), 2);
        drop(a);
        assert_eq!(h.in_flight(), 1);
        drop(b);
        assert_eq!(h.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_open_the_breaker_then_a_probe_closes_it() {
        let h = health();
        assert_eq!(h.admit(Instant::now()), (Availability::Ready, None));
        fail_until_open(&h);
        let until = Instant::now() + secs(30);
        assert_eq!(h.admit(Instant::now()), (Availability::Open { until }, None));

        advance(secs(30)).await;
        let now = Instant::now();
        assert_eq!(h.admit(now), (Availability::Probe, Some(BreakerState::HalfOpen)));
        assert_eq!(h.admit(now), (Availability::Open { until: now + secs(30) }, None), "one probe at a time");
        assert_eq!(h.record(now, success(200), true), Some(BreakerState::Closed));
        assert_eq!(h.admit(now), (Availability::Ready, None));
        assert_eq!(h.snapshot(now).failures, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_failure_reopens() {
        let h = health();
        fail_until_open(&h);
        advance(secs(30)).await;
        let now = Instant::now();
        assert_eq!(h.admit(now).0, Availability::Probe);
        assert_eq!(h.record(now, Outcome::Failure, true), Some(BreakerState::Open { until: now + secs(30) }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_cools_down_for_retry_after_and_is_not_a_failure() {
        let h = health();
        for _ in 0..10 {
            let now = Instant::now();
            assert_eq!(h.record(now, Outcome::RateLimited { retry_after: Some(secs(2)) }, false), None);
        }
        let now = Instant::now();
        assert_eq!(h.admit(now).0, Availability::CoolingDown { until: now + secs(2) });
        advance(ms(1999)).await;
        assert!(!h.admit(Instant::now()).0.is_admitted());
        advance(ms(1)).await;
        assert_eq!(h.admit(Instant::now()).0, Availability::Ready, "ten 429s did not open the breaker");
        let snapshot = h.snapshot(Instant::now());
        assert_eq!((snapshot.rate_limited, snapshot.failures, snapshot.breaker), (10, 0, "closed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_without_retry_after_cools_down_one_second_and_never_beyond_five_minutes() {
        let h = health();
        let now = Instant::now();
        let _ = h.record(now, Outcome::RateLimited { retry_after: None }, false);
        assert_eq!(h.admit(now).0, Availability::CoolingDown { until: now + secs(1) });

        let h = health();
        let _ = h.record(now, Outcome::RateLimited { retry_after: Some(secs(3600)) }, false);
        assert_eq!(h.admit(now).0, Availability::CoolingDown { until: now + MAX_COOLDOWN });
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_429_does_not_cut_a_longer_cooldown() {
        let h = health();
        let now = Instant::now();
        let _ = h.record(now, Outcome::RateLimited { retry_after: Some(secs(10)) }, false);
        let _ = h.record(now, Outcome::RateLimited { retry_after: Some(secs(1)) }, false);
        assert_eq!(h.admit(now).0, Availability::CoolingDown { until: now + secs(10) });
    }

    #[tokio::test(start_paused = true)]
    async fn admitting_while_cooling_down_takes_no_probe() {
        let h = health();
        fail_until_open(&h);
        advance(secs(30)).await;
        let now = Instant::now();
        assert_eq!(h.admit(now).0, Availability::Probe);
        // The probe hit a 429: it frees its slot and the deployment cools down.
        let _ = h.record(now, Outcome::RateLimited { retry_after: Some(secs(1)) }, true);
        for _ in 0..3 {
            assert_eq!(h.admit(now).0, Availability::CoolingDown { until: now + secs(1) });
        }
        advance(secs(1)).await;
        assert_eq!(h.admit(Instant::now()).0, Availability::Probe, "the slot is still free");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_outlasting_a_cooldown_reports_open() {
        let h = health();
        let now = Instant::now();
        let _ = h.record(now, Outcome::RateLimited { retry_after: Some(secs(1)) }, false);
        fail_until_open(&h);
        assert_eq!(h.admit(now).0, Availability::Open { until: now + secs(30) });
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_frees_a_probe_without_deciding() {
        let h = health();
        fail_until_open(&h);
        advance(secs(30)).await;
        let now = Instant::now();
        assert_eq!(h.admit(now).0, Availability::Probe);
        assert_eq!(h.record(now, Outcome::Neutral, true), None);
        assert_eq!(h.admit(now).0, Availability::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_a_moving_average_of_ttft_falling_back_to_total() {
        let h = health();
        assert_eq!(h.latency_score(Instant::now()), None, "unknown before any sample");
        let _ = h.record(Instant::now(), success(1000), false);
        assert_eq!(h.latency_score(Instant::now()), Some(ms(1000)), "no ttft yet: total");
        let _ = h.record(Instant::now(), Outcome::Success { ttft: Some(ms(100)), total: ms(2000) }, false);
        assert_eq!(h.latency_score(Instant::now()), Some(ms(100)), "the first ttft is taken as is");
        let _ = h.record(Instant::now(), Outcome::Success { ttft: Some(ms(200)), total: ms(2000) }, false);
        let score = h.latency_score(Instant::now()).unwrap().as_secs_f64();
        assert!((score - 0.130).abs() < 1e-8, "0.3 × 200 + 0.7 × 100 = 130 ms, got {score}");
        let snapshot = h.snapshot(Instant::now());
        assert!((snapshot.ewma_total_ms.unwrap() - 1510.0).abs() < 1e-6, "{snapshot:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_estimate_halves_every_stale_after() {
        let h = health();
        let _ = h.record(Instant::now(), success(800), false);
        advance(secs(30)).await;
        assert_eq!(h.latency_score(Instant::now()), Some(ms(800)), "fresh up to stale_after");
        advance(secs(30)).await;
        assert_eq!(h.latency_score(Instant::now()), Some(ms(400)));
        advance(secs(60)).await;
        assert_eq!(h.latency_score(Instant::now()), Some(ms(100)));
        assert_eq!(h.snapshot(Instant::now()).ewma_total_ms, Some(800.0), "the average itself is kept");
        let _ = h.record(Instant::now(), success(800), false);
        let score = h.latency_score(Instant::now()).unwrap().as_secs_f64();
        assert!((score - 0.8).abs() < 1e-8, "a new sample makes it fresh again, got {score}");
    }

    #[tokio::test(start_paused = true)]
    async fn headroom_is_the_smaller_fraction_and_is_forgotten_after_a_minute() {
        let h = health();
        assert_eq!(h.headroom(Instant::now()), None);
        h.observe_headroom(Instant::now(), Some((50, 100)), Some((20_000, 100_000)));
        assert_eq!(h.headroom(Instant::now()), Some(0.2));
        advance(secs(30)).await;
        h.observe_headroom(Instant::now(), Some((10, 100)), None);
        assert_eq!(h.headroom(Instant::now()), Some(0.1));
        advance(secs(30)).await;
        assert_eq!(h.headroom(Instant::now()), Some(0.1), "the token reading expired, the request one not");
        advance(secs(30)).await;
        assert_eq!(h.headroom(Instant::now()), None);
        h.observe_headroom(Instant::now(), Some((5, 0)), Some((200, 100)));
        assert_eq!(h.headroom(Instant::now()), Some(1.0), "zero limit ignored, remaining clamped");
    }

    #[tokio::test(start_paused = true)]
    async fn the_providers_headers_and_the_own_limits_combine_to_the_tighter() {
        let h = health();
        let cell = QuotaCell::default();
        h.observe_quota_cell(Instant::now(), &cell);
        assert_eq!(h.headroom(Instant::now()), None, "an empty cell says nothing");

        h.observe_headroom(Instant::now(), Some((80, 100)), None);
        cell.set(ProviderQuota { requests: Some((5, 100)), tokens: Some((900, 1000)) });
        h.observe_quota_cell(Instant::now(), &cell);
        assert_eq!(h.headroom(Instant::now()), Some(0.05), "the provider's reading is tighter");
        assert_eq!(cell.take(), None, "the reading was moved out");
        // A later own-limits reading does not overwrite the provider's.
        advance(secs(10)).await;
        h.observe_headroom(Instant::now(), Some((79, 100)), None);
        assert_eq!(h.headroom(Instant::now()), Some(0.05));
        // The provider's reading expires on its own; the own one is younger and stays.
        advance(secs(55)).await;
        assert_eq!(h.headroom(Instant::now()), Some(0.79));
        assert_eq!(h.snapshot(Instant::now()).headroom, Some(0.79));
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_serializes_every_field() {
        let h = health();
        let _guard = h.begin();
        let _ = h.record(Instant::now(), Outcome::Success { ttft: Some(ms(50)), total: ms(500) }, false);
        fail_until_open(&h);
        advance(secs(10)).await;
        let json = serde_json::to_value(h.snapshot(Instant::now())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "breaker": "open",
                "open_until_ms": 20_000,
                "cooling_down_ms": null,
                "in_flight": 1,
                "ewma_ttft_ms": 50.0,
                "ewma_total_ms": 500.0,
                "latency_score_ms": 50.0,
                "headroom": null,
                "successes": 1,
                "failures": 5,
                "rate_limited": 0,
                "last_error_ms_ago": 10_000,
            })
        );
    }

    #[test]
    fn an_invalid_alpha_falls_back_to_the_default() {
        for alpha in [0.0, -1.0, 1.5, f64::NAN] {
            let h = DeploymentHealth::new(HealthConfig { ewma_alpha: alpha, ..HealthConfig::default() });
            assert_eq!(h.config().ewma_alpha, 0.3);
        }
    }
}
