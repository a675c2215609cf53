//! The in-memory [`RateLimiter`]: one process, one `parking_lot::Mutex` around a map of
//! counters. A whole `reserve` runs under the lock, so the all-or-nothing check-and-charge is
//! atomic. Windows use `tokio::time::Instant` (paused-time tests move them); calendar budgets use
//! the injected [`Clock`].
//!
//! Memory stays bounded: after every `max(1024, entries)` operations a sweep drops drained
//! buckets, budgets of past periods and empty slot sets (amortised O(1) per call).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::time::Instant;
use tollgate_types::ports::{
    Adjustment, Admission, Clock, LimitError, LimitKind, LimitStatus, RateLimiter, Reservation, SystemClock,
};

use super::gcra::{self, Take};
use super::{CONCURRENCY_RETRY_AFTER, DEFAULT_MAX_HOLD};

/// Single-node rate limiter and budget keeper.
pub struct MemoryRateLimiter {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    max_hold: Duration,
}

type Key = (Arc<str>, LimitKind);

/// Keys are made by the gateway (ids and configured names), not chosen by clients, so a fast
/// seeded hash is enough (SipHash showed in profiles of the request path).
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry, Hasher>,
    ops_since_sweep: usize,
}

#[derive(Debug, Clone)]
enum Entry {
    /// A window's bucket: `level` units as of `at`, draining at `limit` per period (the limit of
    /// the latest reservation, so settles know the rate).
    Bucket { level: f64, at: Instant, limit: u64 },
    /// A budget: `used` in the period that started at `start` (`None`: total).
    Budget { start: Option<OffsetDateTime>, used: u64 },
    /// Expiry times of held slots, oldest first (every slot is held for the same maximum).
    Slots(VecDeque<Instant>),
}

/// Now, for both kinds of time.
#[derive(Clone, Copy)]
struct Now {
    mono: Instant,
    utc: OffsetDateTime,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemoryRateLimiter {
    /// A limiter whose budgets follow `clock`; slots expire after [`DEFAULT_MAX_HOLD`].
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { state: Mutex::new(State::default()), clock, max_hold: DEFAULT_MAX_HOLD }
    }

    /// Changes how long an unreleased concurrency slot is held.
    #[must_use]
    pub fn with_max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = max_hold;
        self
    }

    /// Number of counters held (to test that the sweep keeps memory bounded).
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> Now {
        Now { mono: Instant::now(), utc: self.clock.now_utc() }
    }
}

/// A new counter of `kind`, empty as of `now`.
fn fresh(kind: LimitKind, now: Now) -> Entry {
    match kind {
        LimitKind::Window { .. } => Entry::Bucket { level: 0.0, at: now.mono, limit: 0 },
        LimitKind::Calendar { period } => Entry::Budget { start: period.start(now.utc), used: 0 },
        LimitKind::Concurrency => Entry::Slots(VecDeque::new()),
    }
}

/// Brings a counter up to `now` in place: drains a bucket, starts a new budget period, drops
/// expired slots.
fn refresh(entry: &mut Entry, kind: LimitKind, now: Now) {
    match (kind, &mut *entry) {
        (LimitKind::Window { period }, Entry::Bucket { level, at, limit }) => {
            *level = gcra::drain(*level, elapsed_us(*at, now.mono), *limit, period_us(period));
            *at = now.mono;
        }
        (LimitKind::Calendar { period }, Entry::Budget { start, used }) => {
            let cur = period.start(now.utc);
            if *start != cur {
                *start = cur;
                *used = 0;
            }
        }
        (LimitKind::Concurrency, Entry::Slots(slots)) => {
            while slots.front().is_some_and(|exp| *exp <= now.mono) {
                slots.pop_front();
            }
        }
        // The kind is part of the key, so a mismatch cannot be stored; start afresh if it were.
        _ => *entry = fresh(kind, now),
    }
}

/// What one charge changed, so a request refused by a later limit can be put back exactly.
enum Undo {
    /// The counter did not exist.
    Absent,
    /// The bucket or budget as it was.
    Was(Entry),
    /// Slots pushed onto an existing set.
    Pushed(u64),
}

fn elapsed_us(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_micros() as f64
}

fn period_us(period: Duration) -> f64 {
    period.as_micros() as f64
}

/// Charges `r` to `entry` (already current) or says why not.
fn charge(
    entry: &mut Entry,
    r: &Reservation,
    now: Now,
    max_hold: Duration,
) -> Result<LimitStatus, LimitError> {
    let exceeded = |retry_after| LimitError::Exceeded { name: r.name.clone(), limit: r.limit, retry_after };
    let status =
        |remaining, reset_after| LimitStatus { name: r.name.clone(), limit: r.limit, remaining, reset_after };
    match (r.kind, entry) {
        (LimitKind::Window { period }, Entry::Bucket { level, limit, .. }) => {
            match gcra::take(*level, r.amount, r.limit, period_us(period)) {
                Take::Ok { level: new, remaining, reset } => {
                    *level = new;
                    *limit = r.limit;
                    Ok(status(remaining, Some(reset)))
                }
                Take::No { retry_after } => Err(exceeded(retry_after)),
            }
        }
        (LimitKind::Calendar { period }, Entry::Budget { used, .. }) => {
            let reset = period.end(now.utc).map(|end| positive(end - now.utc));
            match used.checked_add(r.amount) {
                Some(total) if total <= r.limit => {
                    *used = total;
                    Ok(status(r.limit - total, reset))
                }
                _ if r.amount > r.limit => Err(exceeded(None)),
                _ => Err(exceeded(reset)),
            }
        }
        (LimitKind::Concurrency, Entry::Slots(slots)) => {
            let held = slots.len() as u64;
            if r.amount > r.limit {
                return Err(exceeded(None));
            }
            if held.saturating_add(r.amount) > r.limit {
                return Err(exceeded(Some(CONCURRENCY_RETRY_AFTER)));
            }
            for _ in 0..r.amount {
                slots.push_back(now.mono + max_hold);
            }
            Ok(status(r.limit - slots.len() as u64, None))
        }
        _ => Err(LimitError::Unavailable("limit kind does not match its counter".into())),
    }
}

fn positive(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

fn adjust(entry: &mut Entry, delta: i64, now: Now, max_hold: Duration) {
    match entry {
        Entry::Bucket { level, .. } => *level = (*level + delta as f64).max(0.0),
        Entry::Budget { used, .. } => {
            *used = if delta >= 0 {
                used.saturating_add(delta.unsigned_abs())
            } else {
                used.saturating_sub(delta.unsigned_abs())
            };
        }
        Entry::Slots(slots) => {
            if delta < 0 {
                for _ in 0..delta.unsigned_abs() {
                    slots.pop_front();
                }
            } else {
                for _ in 0..delta {
                    slots.push_back(now.mono + max_hold);
                }
            }
        }
    }
}

/// True when the counter holds nothing worth keeping (forgetting it changes no answer).
fn is_idle(entry: &mut Entry, kind: LimitKind, now: Now) -> bool {
    refresh(entry, kind, now);
    match entry {
        Entry::Bucket { level, .. } => *level <= 0.0,
        Entry::Budget { used, .. } => *used == 0,
        Entry::Slots(slots) => slots.is_empty(),
    }
}

impl State {
    /// Puts back what `undo` (one entry per reservation of `reqs`, in order) changed.
    fn roll_back(&mut self, reqs: &[Reservation], undo: Vec<Undo>) {
        for (r, before) in reqs.iter().zip(undo).rev() {
            let key = (r.key.clone(), r.kind);
            match before {
                Undo::Absent => {
                    self.entries.remove(&key);
                }
                Undo::Was(entry) => {
                    self.entries.insert(key, entry);
                }
                Undo::Pushed(n) => {
                    if let Some(Entry::Slots(slots)) = self.entries.get_mut(&key) {
                        for _ in 0..n {
                            slots.pop_back();
                        }
                    }
                }
            }
        }
    }

    fn sweep_if_due(&mut self, now: Now) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep < self.entries.len().max(1024) {
            return;
        }
        self.ops_since_sweep = 0;
        self.entries.retain(|(_, kind), entry| !is_idle(entry, *kind, now));
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn reserve(&self, reqs: &[Reservation]) -> Result<Admission, LimitError> {
        let now = self.now();
        let mut state = self.state.lock();
        state.sweep_if_due(now);
        // Charge every counter in place and keep what each charge changed; a refusal puts the
        // earlier ones back. Refusals are the rare case, so this beats copying counters first.
        let mut undo = Vec::with_capacity(reqs.len());
        let mut limits = Vec::with_capacity(reqs.len());
        for r in reqs {
            let key = (r.key.clone(), r.kind);
            let (entry, before) = match state.entries.get_mut(&key) {
                Some(entry) => {
                    refresh(entry, r.kind, now);
                    let before = match &*entry {
                        Entry::Slots(_) => Undo::Pushed(r.amount),
                        other => Undo::Was(other.clone()),
                    };
                    (entry, before)
                }
                None => (state.entries.entry(key).or_insert_with(|| fresh(r.kind, now)), Undo::Absent),
            };
            match charge(entry, r, now, self.max_hold) {
                Ok(status) => {
                    undo.push(before);
                    limits.push(status);
                }
                Err(e) => {
                    if matches!(before, Undo::Absent) {
                        state.entries.remove(&(r.key.clone(), r.kind));
                    }
                    state.roll_back(&reqs[..undo.len()], undo);
                    return Err(e);
                }
            }
        }
        Ok(Admission { limits, degraded: false })
    }

    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), LimitError> {
        let now = self.now();
        let mut state = self.state.lock();
        state.sweep_if_due(now);
        for a in adjustments {
            if a.delta == 0 {
                continue;
            }
            let key = (a.key.clone(), a.kind);
            match state.entries.get_mut(&key) {
                // A bucket that was never charged has no rate to drain at: nothing to correct.
                Some(Entry::Bucket { limit: 0, .. }) => {}
                Some(entry) => {
                    refresh(entry, a.kind, now);
                    adjust(entry, a.delta, now, self.max_hold);
                }
                None if a.delta > 0 && !matches!(a.kind, LimitKind::Window { .. }) => {
                    let mut entry = fresh(a.kind, now);
                    adjust(&mut entry, a.delta, now, self.max_hold);
                    state.entries.insert(key, entry);
                }
                None => {}
            }
        }
        Ok(())
    }

    fn is_local(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use tollgate_types::ports::ManualClock;

    use super::*;

    crate::limiter_contract!(memory_fixture());

    async fn memory_fixture() -> crate::limits::contract::Fixture {
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-21 12:00 UTC)));
        let limiter = Arc::new(MemoryRateLimiter::new(clock.clone()));
        crate::limits::contract::Fixture { limiter, clock, guard: Box::new(()) }
    }

    fn rpm(key: &str, limit: u64) -> Reservation {
        Reservation {
            key: key.into(),
            kind: LimitKind::Window { period: Duration::from_secs(60) },
            limit,
            amount: 1,
            name: "rpm".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn window_refills_with_paused_time() {
        let l = MemoryRateLimiter::default();
        for _ in 0..3 {
            l.reserve(&[rpm("a", 3)]).await.unwrap();
        }
        let err = l.reserve(&[rpm("a", 3)]).await.unwrap_err();
        assert_eq!(
            err,
            LimitError::Exceeded { name: "rpm".into(), limit: 3, retry_after: Some(Duration::from_secs(20)) }
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        let ok = l.reserve(&[rpm("a", 3)]).await.unwrap();
        assert_eq!(ok.limits[0].remaining, 0);
        assert_eq!(ok.limits[0].reset_after, Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(l.reserve(&[rpm("a", 3)]).await.unwrap().limits[0].remaining, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_puts_back_every_earlier_charge_of_the_request() {
        let l = MemoryRateLimiter::default();
        let slot = Reservation {
            key: "c".into(),
            kind: LimitKind::Concurrency,
            limit: 5,
            amount: 1,
            name: "slots".into(),
        };
        l.reserve(&[slot.clone(), rpm("a", 10)]).await.unwrap();
        let counters = l.len();
        let refused =
            l.reserve(&[slot.clone(), rpm("a", 10), rpm("new", 10), rpm("a", 10), rpm("never", 0)]).await;
        assert!(refused.is_err());
        assert_eq!(l.len(), counters, "a counter made by the refused request is gone");
        let ok = l.reserve(&[slot, rpm("a", 10)]).await.unwrap();
        assert_eq!(ok.limits[0].remaining, 3, "one slot from before, one now");
        assert_eq!(ok.limits[1].remaining, 8, "one request from before, one now");
    }

    #[tokio::test(start_paused = true)]
    async fn unreleased_slots_expire_after_max_hold() {
        let l = MemoryRateLimiter::default().with_max_hold(Duration::from_secs(10));
        let slot = Reservation {
            key: "c".into(),
            kind: LimitKind::Concurrency,
            limit: 1,
            amount: 1,
            name: "in flight".into(),
        };
        l.reserve(std::slice::from_ref(&slot)).await.unwrap();
        assert!(l.reserve(std::slice::from_ref(&slot)).await.is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        l.reserve(std::slice::from_ref(&slot)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_keeps_memory_bounded() {
        let l = MemoryRateLimiter::default();
        for i in 0..3000 {
            l.reserve(&[rpm(&format!("k{i}"), 10)]).await.unwrap();
        }
        assert!(l.len() > 1024);
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3000 {
            l.reserve(&[rpm("live", 1_000_000)]).await.unwrap();
        }
        assert!(l.len() < 10, "drained buckets are swept, {} left", l.len());
    }
}
