//! The Redis names of the counters, kept once built: a gateway node uses the same few counters
//! for every request of a key, so formatting their names on every call (seven `format!`s per
//! batch) was work thrown away.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tollgate_types::ports::LimitKind;

use crate::FastMap;

/// Names kept before the cache starts over (every distinct key, tenant and model counter of a
/// node; far more than a node sees in an hour in practice).
const MAX_NAMES: usize = 100_000;

/// A counter as `tollgate_limiter_v3` knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter<'a> {
    /// Its Redis key.
    pub name: &'a str,
    /// Its kind's name in the Lua functions: `w`, `c` or `q`.
    pub kind: &'static str,
    /// The kind's parameter: a window's period in microseconds, the seconds left in a calendar
    /// period (-1: never ends), a concurrency slot's maximum hold in microseconds.
    pub param: i64,
}

/// Counter names by (key, kind).
pub(crate) struct KeyNames {
    prefix: String,
    max_hold_us: i64,
    names: FastMap<(Arc<str>, LimitKind), Named>,
}

struct Named {
    name: Box<str>,
    /// Calendar counters: the period the name was built for (its label is in the name).
    period: Option<(OffsetDateTime, OffsetDateTime)>,
}

impl KeyNames {
    pub(crate) fn new(prefix: &str, max_hold: Duration) -> Self {
        Self { prefix: prefix.to_owned(), max_hold_us: micros(max_hold), names: FastMap::default() }
    }

    /// The counter of `key` and `kind` at `now` (calendar periods are those of `now`).
    pub(crate) fn counter(&mut self, key: &Arc<str>, kind: LimitKind, now: OffsetDateTime) -> Counter<'_> {
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        let prefix = &self.prefix;
        let named = match self.names.entry((key.clone(), kind)) {
            Entry::Occupied(e) => {
                let named = e.into_mut();
                // A calendar name holds its period's label: a new period (or a clock set back)
                // needs a new name.
                if named.period.is_some_and(|(start, end)| !(start <= now && now < end)) {
                    *named = Named::build(prefix, key, kind, now);
                }
                named
            }
            Entry::Vacant(e) => e.insert(Named::build(prefix, key, kind, now)),
        };
        let (kind, param) = match kind {
            LimitKind::Window { period } => ("w", micros(period)),
            LimitKind::Calendar { .. } => {
                // Whole seconds, rounded up so a client told to wait this long finds a new period.
                let left = named.period.map_or(-1, |(_, end)| {
                    let d = end - now;
                    (d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0)).max(1)
                });
                ("c", left)
            }
            LimitKind::Concurrency => ("q", self.max_hold_us),
        };
        Counter { name: &named.name, kind, param }
    }
}

impl Named {
    fn build(prefix: &str, key: &str, kind: LimitKind, now: OffsetDateTime) -> Self {
        match kind {
            LimitKind::Window { period } => {
                Self { name: format!("{prefix}:{key}:w:{}", period.as_millis()).into(), period: None }
            }
            LimitKind::Calendar { period } => Self {
                name: format!("{prefix}:{key}:c:{}:{}", period.as_str(), period.label(now)).into(),
                period: period.start(now).zip(period.end(now)),
            },
            LimitKind::Concurrency => Self { name: format!("{prefix}:{key}:q").into(), period: None },
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use tollgate_types::ports::BudgetPeriod;

    use super::*;

    #[test]
    fn names_carry_kind_and_period_label_and_follow_the_period() {
        let mut names = KeyNames::new("tg:lim", Duration::from_secs(600));
        let key: Arc<str> = "p:1".into();
        let month = LimitKind::Calendar { period: BudgetPeriod::Month };
        let now = datetime!(2026-11-21 12:00 UTC);
        let c = names.counter(&key, month, now);
        assert_eq!(
            c,
            Counter { name: "tg:lim:p:1:c:month:2026-11", kind: "c", param: 9 * 86_400 + 12 * 3600 }
        );
        // Cached, with the seconds left computed anew.
        let c = names.counter(&key, month, datetime!(2026-11-30 23:59:59.5 UTC));
        assert_eq!((c.name, c.param), ("tg:lim:p:1:c:month:2026-11", 1));
        // A new period, and back (a clock set back): the name follows.
        assert_eq!(
            names.counter(&key, month, datetime!(2026-12-01 00:00 UTC)).name,
            "tg:lim:p:1:c:month:2026-12"
        );
        assert_eq!(names.counter(&key, month, now).name, "tg:lim:p:1:c:month:2026-11");

        let total = LimitKind::Calendar { period: BudgetPeriod::Total };
        assert_eq!(
            names.counter(&key, total, now),
            Counter { name: "tg:lim:p:1:c:total:total", kind: "c", param: -1 }
        );
        let minute = LimitKind::Window { period: Duration::from_secs(60) };
        assert_eq!(
            names.counter(&"k".into(), minute, now),
            Counter { name: "tg:lim:k:w:60000", kind: "w", param: 60_000_000 }
        );
        assert_eq!(
            names.counter(&"k".into(), LimitKind::Concurrency, now),
            Counter { name: "tg:lim:k:q", kind: "q", param: 600_000_000 }
        );
    }
}
