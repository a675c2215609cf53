//! What goes over the wire to the `tollgate_limiter_v3` functions (`src/limiter.lua`): the
//! binary arguments of `tollgate_reserve_v3` ([`ReserveArgs`]), its reply pinned to
//! [`ReserveOutcome`], and the merging of settle adjustments before they are sent. Pure code,
//! no I/O.

use crate::FastMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use tollgate_types::ports::{LimitError, LimitKind};

/// The `counters` and `requests` arguments of `tollgate_reserve_v3`, little-endian, mirrored
/// from `src/limiter.lua` (keep both in step): per counter (KEYS entry) its kind byte and its
/// param (i64); per request its reservation count (i32), then per reservation its 1-based
/// KEYS index (i32), limit and amount (i64, saturated).
#[derive(Debug, Default)]
pub(crate) struct ReserveArgs {
    pub(crate) counters: Vec<u8>,
    pub(crate) requests: Vec<u8>,
}

impl ReserveArgs {
    pub(crate) fn with_capacity(counters: usize, reservations: usize) -> Self {
        Self { counters: Vec::with_capacity(counters * 9), requests: Vec::with_capacity(reservations * 24) }
    }

    /// The next KEYS entry's kind (`w`, `c` or `q`) and param.
    pub(crate) fn counter(&mut self, kind: &str, param: i64) {
        self.counters.push(kind.as_bytes().first().copied().unwrap_or(b'?'));
        self.counters.extend_from_slice(&param.to_le_bytes());
    }

    /// Starts a request of `n` reservations.
    pub(crate) fn request(&mut self, n: usize) {
        self.requests.extend_from_slice(&i32::try_from(n).unwrap_or(i32::MAX).to_le_bytes());
    }

    /// One reservation of the current request, on the `index`-th (1-based) KEYS entry.
    pub(crate) fn reservation(&mut self, index: usize, limit: u64, amount: u64) {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX).to_le_bytes();
        self.requests.extend_from_slice(&i32::try_from(index).unwrap_or(i32::MAX).to_le_bytes());
        self.requests.extend_from_slice(&int(limit));
        self.requests.extend_from_slice(&int(amount));
    }
}

/// One request's part of the `tollgate_reserve_v3` reply, mirrored from `src/limiter.lua`; keep
/// both in step. The reply is flat integers, per request in order: admitted
/// `1, remaining_1, reset_us_1, …` (one pair per reservation), refused `0, index (1-based),
/// retry_after_us`; `-1` stands for "none" in the time fields.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReserveOutcome {
    /// `(remaining, reset_us)` per reservation, in order.
    Admitted(Vec<(i64, i64)>),
    Refused {
        /// 0-based index of the first limit hit.
        failed: usize,
        retry_after_us: i64,
    },
}

impl ReserveOutcome {
    /// Splits a whole reply into one outcome per request; `counts` are the requests'
    /// reservation counts in the order they were sent. Anything else than exactly that shape is
    /// an error, so a reply from a function of another version is never misread.
    pub(crate) fn parse_all(
        v: &[i64],
        counts: impl IntoIterator<Item = usize>,
    ) -> Result<Vec<Self>, LimitError> {
        let bad = || LimitError::Unavailable(format!("unexpected reply from {}: {v:?}", crate::RESERVE_FN));
        let mut rest = v;
        let mut out = Vec::new();
        for n in counts {
            match rest {
                [1, tail @ ..] if tail.len() >= n * 2 => {
                    let (pairs, tail) = tail.split_at(n * 2);
                    out.push(Self::Admitted(pairs.chunks_exact(2).map(|c| (c[0], c[1])).collect()));
                    rest = tail;
                }
                [0, idx, retry, tail @ ..] => {
                    let failed =
                        usize::try_from(*idx).ok().filter(|i| (1..=n).contains(i)).ok_or_else(bad)?;
                    out.push(Self::Refused { failed: failed - 1, retry_after_us: *retry });
                    rest = tail;
                }
                _ => return Err(bad()),
            }
        }
        if rest.is_empty() { Ok(out) } else { Err(bad()) }
    }
}

/// Merges adjustments of one counter (same key and kind) by summing their deltas, keeping the
/// order in which counters first appear and dropping counters whose deltas cancel out.
///
/// Why: the gateway settles up to 256 requests at once and most of them share counters, so
/// without merging `tollgate_settle_v3` would load and save one counter hundreds of times.
/// Sums are the same end state as applying the deltas one by one except where a level would
/// have been clamped at zero in between (a return then a charge of the same counter): the sum
/// is then the more exact of the two, since clamping only exists to keep levels non-negative.
pub(crate) fn merge_adjustments<'a>(
    adjustments: impl IntoIterator<Item = (&'a Arc<str>, LimitKind, i64)>,
) -> Vec<(&'a Arc<str>, LimitKind, i64)> {
    let adjustments = adjustments.into_iter();
    let mut merged: Vec<(&Arc<str>, LimitKind, i64)> = Vec::with_capacity(adjustments.size_hint().0);
    let mut index: FastMap<(&str, LimitKind), usize> =
        FastMap::with_capacity_and_hasher(merged.capacity(), foldhash::fast::RandomState::default());
    for (key, kind, delta) in adjustments {
        match index.entry((&**key, kind)) {
            Entry::Occupied(e) => {
                if let Some(m) = merged.get_mut(*e.get()) {
                    m.2 = m.2.saturating_add(delta);
                }
            }
            Entry::Vacant(e) => {
                e.insert(merged.len());
                merged.push((key, kind, delta));
            }
        }
    }
    merged.retain(|m| m.2 != 0);
    merged
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_types::ports::BudgetPeriod;

    use super::*;

    #[test]
    fn reply_splits_into_one_outcome_per_request() {
        // Three requests of 2, 1 and 3 reservations: admitted, refused at its only limit,
        // admitted.
        let v = [1, 2, 20, 5, -1, 0, 1, 1_000_000, 1, 0, -1, 7, 30, 9, 40];
        assert_eq!(
            ReserveOutcome::parse_all(&v, [2, 1, 3]).unwrap(),
            vec![
                ReserveOutcome::Admitted(vec![(2, 20), (5, -1)]),
                ReserveOutcome::Refused { failed: 0, retry_after_us: 1_000_000 },
                ReserveOutcome::Admitted(vec![(0, -1), (7, 30), (9, 40)]),
            ]
        );
        assert_eq!(
            ReserveOutcome::parse_all(&[0, 2, -1], [2]).unwrap(),
            vec![ReserveOutcome::Refused { failed: 1, retry_after_us: -1 }]
        );
        // A refusal in the middle of a batch does not shift the requests after it.
        assert_eq!(
            ReserveOutcome::parse_all(&[0, 3, 5, 1, 4, 4], [3, 1]).unwrap(),
            vec![
                ReserveOutcome::Refused { failed: 2, retry_after_us: 5 },
                ReserveOutcome::Admitted(vec![(4, 4)]),
            ]
        );
    }

    #[test]
    fn reserve_args_are_little_endian_and_saturated() {
        let mut a = ReserveArgs::default();
        a.counter("w", 60_000_000);
        a.request(1);
        a.reservation(1, u64::MAX, 7);
        let mut counters = vec![b'w'];
        counters.extend_from_slice(&60_000_000i64.to_le_bytes());
        assert_eq!(a.counters, counters);
        let mut requests = 1i32.to_le_bytes().to_vec();
        requests.extend_from_slice(&1i32.to_le_bytes());
        requests.extend_from_slice(&i64::MAX.to_le_bytes());
        requests.extend_from_slice(&7i64.to_le_bytes());
        assert_eq!(a.requests, requests);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let bad = |v: &[i64], counts: &[usize]| ReserveOutcome::parse_all(v, counts.iter().copied()).is_err();
        assert!(bad(&[0, 3, 5], &[2])); // index past the request's reservations
        assert!(bad(&[0, 0, 5], &[2])); // indexes are 1-based
        assert!(bad(&[0, -1, 5], &[2]));
        assert!(bad(&[1, 0, 0, 2], &[2])); // too short (a v1-shaped reply)
        assert!(bad(&[1, 2, 20], &[1, 1])); // second request missing
        assert!(bad(&[1, 2, 20, 1, 3, 30], &[1])); // trailing values
        assert!(bad(&[2, 0, 0], &[1])); // unknown flag
        assert!(bad(&[0, 1], &[1]));
        assert!(bad(&[], &[1]));
        assert!(!bad(&[], &[]));
    }

    #[test]
    fn merging_sums_per_counter_and_drops_cancelled_ones() {
        let (a, b): (Arc<str>, Arc<str>) = ("k:tpm".into(), "p:budget".into());
        let w = LimitKind::Window { period: Duration::from_secs(60) };
        let w2 = LimitKind::Window { period: Duration::from_secs(3600) };
        let c = LimitKind::Calendar { period: BudgetPeriod::Month };
        let q = LimitKind::Concurrency;
        let input = [
            (&a, w, -300),
            (&b, c, -900),
            (&a, q, -1),
            (&a, w, 120),
            (&a, w2, 5), // same key, another kind: another counter
            (&b, c, -100),
            (&a, q, -1),
            (&b, q, 2),
            (&b, q, -2), // cancels out
        ];
        let merged = merge_adjustments(input);
        let got: Vec<(&str, LimitKind, i64)> = merged.iter().map(|(k, kind, d)| (&***k, *kind, *d)).collect();
        assert_eq!(got, vec![("k:tpm", w, -180), ("p:budget", c, -1000), ("k:tpm", q, -2), ("k:tpm", w2, 5)]);
        assert!(merge_adjustments([(&a, w, i64::MIN), (&a, w, -1)])[0].2 == i64::MIN);
        assert!(merge_adjustments([]).is_empty());
    }
}
