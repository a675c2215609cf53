//! The rate-limit and budget port: one [`RateLimiter`] trait with an in-memory implementation
//! (`tollgate_core::limits::MemoryRateLimiter`, single node) and a Redis one
//! (`tollgate_redis::RedisRateLimiter`, shared by every node); both pass one contract suite.
//!
//! A request is admitted by [`RateLimiter::reserve`] with the list of every limit it falls under
//! (per-key requests per minute, per-tenant tokens per minute, per-project budget, in-flight
//! slots, …). The list is all-or-nothing: either every counter is charged or none is. Once the
//! real amounts are known (tokens, cost) the caller corrects the estimates with
//! [`RateLimiter::settle`], which also releases concurrency slots.
//!
//! Three kinds of limit ([`LimitKind`]):
//! - [`LimitKind::Window`]: `limit` units per `period`, enforced as a GCRA / leaky bucket: the
//!   bucket holds at most `limit` units and drains continuously at `limit / period`, so a full
//!   burst is allowed and capacity comes back smoothly (no fixed-window double burst).
//! - [`LimitKind::Calendar`]: a budget over a UTC calendar period ([`BudgetPeriod`]) that resets at
//!   the period boundary; amounts are integers (nano-dollars for spend).
//! - [`LimitKind::Concurrency`]: `limit` slots held until released by a settle with `delta = -1`.
//!   A slot that is never released expires after the limiter's maximum hold time (10 minutes
//!   unless configured), so a crashed request cannot leak capacity forever.
//!
//! Settling applies the delta to the *current* state: a window's bucket level now, the budget of
//! the period that is current at settle time (a request that straddles a budget boundary is
//! corrected in the new period). Levels never go below zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use time::{Date, Month, OffsetDateTime, Time};

/// Admits requests against rate limits and budgets.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Charges every reservation, or none of them.
    ///
    /// On refusal the error names the first limit (in list order) that could not take its
    /// amount. On success the [`Admission`] holds one [`LimitStatus`] per reservation, in order.
    async fn reserve(&self, reqs: &[Reservation]) -> Result<Admission, LimitError>;

    /// Charges (positive delta) or returns (negative delta) capacity once the real amount is
    /// known, and releases concurrency slots (`delta = -1` per slot). Never refuses: the only
    /// error is [`LimitError::Unavailable`], which the caller logs and does not fail a request
    /// over.
    async fn settle(&self, adjustments: &[Adjustment]) -> Result<(), LimitError>;

    /// True when calls complete without waiting on I/O (an in-process limiter): callers may
    /// then settle inline instead of handing settlements to a background task.
    fn is_local(&self) -> bool {
        false
    }
}

/// Why a reservation was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The named limit cannot take the amount now.
    #[error("{name} exceeded (limit {limit})")]
    Exceeded {
        /// The reservation's `name`, e.g. "key requests per minute".
        name: Arc<str>,
        /// The reservation's `limit`.
        limit: u64,
        /// When trying again can succeed; `None` when waiting cannot help (a `total` budget, or
        /// an amount larger than the limit itself).
        retry_after: Option<Duration>,
    },
    /// The limiter's backend cannot be reached or timed out; a policy decides (fail open or
    /// closed).
    #[error("the rate limiter is unavailable: {0}")]
    Unavailable(String),
}

/// One limit a request falls under, and how much of it the request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The counter's key, namespaced by the caller, e.g. `k:<key_id>:rpm`. Two reservations
    /// with the same key and kind share one counter. Shared strings: a caller keeps its
    /// reservations' keys and names and hands out cheap clones per request.
    pub key: Arc<str>,
    pub kind: LimitKind,
    /// The limit: units per window, budget per period, or slots.
    pub limit: u64,
    /// How much this request takes (1 for requests, an estimate for tokens, the worst-case cost
    /// for budgets, 1 for a slot).
    pub amount: u64,
    /// A human name for error messages, e.g. "key requests per minute".
    pub name: Arc<str>,
}

/// A correction of an earlier reservation (same `key` and `kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub key: Arc<str>,
    pub kind: LimitKind,
    /// Units to add (real amount above the estimate) or to give back (negative); `-1` releases
    /// one concurrency slot.
    pub delta: i64,
}

/// The kind of counter a reservation is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `limit` units per `period`, refilled continuously (GCRA).
    Window { period: Duration },
    /// A budget over a UTC calendar period.
    Calendar { period: BudgetPeriod },
    /// In-flight slots, released by settling `-1`.
    Concurrency,
}

/// The period of a budget. Periods start at 00:00 UTC: every day, every ISO week (Monday), the
/// first of every month; `Total` never resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
    Total,
}

impl BudgetPeriod {
    /// The start of the period containing `now` (UTC), or `None` for `Total`.
    pub fn start(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let date = now.date();
        let start = match self {
            Self::Day => date,
            Self::Week => {
                let back = i64::from(date.weekday().number_days_from_monday());
                date.checked_sub(time::Duration::days(back))?
            }
            Self::Month => Date::from_calendar_date(date.year(), date.month(), 1).ok()?,
            Self::Total => return None,
        };
        Some(start.with_time(Time::MIDNIGHT).assume_utc())
    }

    /// The start of the next period (when the budget containing `now` resets), or `None` for
    /// `Total`.
    pub fn end(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = self.start(now)?;
        match self {
            Self::Day => start.checked_add(time::Duration::days(1)),
            Self::Week => start.checked_add(time::Duration::weeks(1)),
            Self::Month => {
                let d = start.date();
                let (y, m) = if d.month() == Month::December {
                    (d.year().checked_add(1)?, Month::January)
                } else {
                    (d.year(), d.month().next())
                };
                Some(Date::from_calendar_date(y, m, 1).ok()?.with_time(Time::MIDNIGHT).assume_utc())
            }
            Self::Total => None,
        }
    }

    /// A label naming the period containing `now`, used in backend keys: `2026-11-21`,
    /// `2026-W47` (ISO week-numbering year), `2026-11`, `total`.
    pub fn label(self, now: OffsetDateTime) -> String {
        let d = now.to_offset(time::UtcOffset::UTC).date();
        match self {
            Self::Day => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            Self::Week => {
                let (y, w, _) = d.to_iso_week_date();
                format!("{y:04}-W{w:02}")
            }
            Self::Month => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
            Self::Total => "total".to_owned(),
        }
    }

    /// Short name used in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Total => "total",
        }
    }
}

/// What a successful reservation left, per reservation (for `x-ratelimit-*` headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// One entry per reservation, in the order given.
    pub limits: Vec<LimitStatus>,
    /// True when the backend was unavailable and a fail-open policy admitted the request
    /// unchecked (the statuses are then only `limit - amount`, nothing was charged).
    pub degraded: bool,
}

/// The state of one limit right after it was charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    pub name: Arc<str>,
    pub limit: u64,
    /// Units still available now.
    pub remaining: u64,
    /// Time until the limit is back to its initial state (window fully refilled, budget period
    /// over); `None` when it never resets (`Total` budgets) or is held by slots.
    pub reset_after: Option<Duration>,
}

/// UTC wall-clock time for calendar budgets; injected so tests can cross period boundaries.
pub trait Clock: Send + Sync {
    fn now_utc(&self) -> OffsetDateTime;
}

/// The system's UTC time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    unix_micros: AtomicI64,
}

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self { unix_micros: AtomicI64::new(to_micros(at)) }
    }

    pub fn set(&self, at: OffsetDateTime) {
        self.unix_micros.store(to_micros(at), Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.unix_micros.fetch_add(by, Ordering::SeqCst);
    }
}

fn to_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

impl Clock for ManualClock {
    fn now_utc(&self) -> OffsetDateTime {
        let micros = i128::from(self.unix_micros.load(Ordering::SeqCst));
        OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn periods_start_end_and_label_at_utc_boundaries() {
        let now = datetime!(2026-11-21 16:42:03 UTC); // a Saturday
        assert_eq!(BudgetPeriod::Day.start(now), Some(datetime!(2026-11-21 0:00 UTC)));
        assert_eq!(BudgetPeriod::Day.end(now), Some(datetime!(2026-11-22 0:00 UTC)));
        assert_eq!(BudgetPeriod::Week.start(now), Some(datetime!(2026-11-16 0:00 UTC)));
        assert_eq!(BudgetPeriod::Week.end(now), Some(datetime!(2026-11-23 0:00 UTC)));
        assert_eq!(BudgetPeriod::Month.start(now), Some(datetime!(2026-11-01 0:00 UTC)));
        assert_eq!(BudgetPeriod::Month.end(now), Some(datetime!(2026-12-01 0:00 UTC)));
        assert_eq!(BudgetPeriod::Total.start(now), None);
        assert_eq!(BudgetPeriod::Day.label(now), "2026-11-21");
        assert_eq!(BudgetPeriod::Week.label(now), "2026-W47");
        assert_eq!(BudgetPeriod::Month.label(now), "2026-11");
        assert_eq!(BudgetPeriod::Total.label(now), "total");
    }

    #[test]
    fn december_rolls_into_next_year_and_iso_week_year_differs() {
        let now = datetime!(2026-12-31 23:59:59 UTC);
        assert_eq!(BudgetPeriod::Month.end(now), Some(datetime!(2027-01-01 0:00 UTC)));
        // 2027-01-01 is a Friday: ISO week 53 of 2026.
        assert_eq!(BudgetPeriod::Week.label(datetime!(2027-01-01 12:00 UTC)), "2026-W53");
        // Other offsets are converted to UTC first.
        assert_eq!(BudgetPeriod::Day.label(datetime!(2026-12-31 23:30 -02:00)), "2027-01-01");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(datetime!(2026-11-30 23:59:59 UTC));
        assert_eq!(c.now_utc(), datetime!(2026-11-30 23:59:59 UTC));
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now_utc(), datetime!(2026-12-01 0:00 UTC));
    }
}
