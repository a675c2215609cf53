//! Routing strategies: the order in which an alias's deployments are tried for one request.
//!
//! The router builds a [`Candidate`] per deployment that may take the request (breaker and
//! cooldown already checked), and [`Selector::order`] returns all of them, best first; the
//! pipeline tries them in that order, falling through on failure. Priority groups come first:
//! a lower `priority` value is always tried before a higher one, whatever the strategy, so
//! operators can keep a fallback provider out of normal traffic. The strategy orders each group.
//!
//! Ordering is pure apart from the weighted round-robin state kept in the [`Selector`] (one per
//! alias) and the random numbers passed in, so tests can drive both.

use std::cmp::Reverse;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;

/// How an alias orders the deployments within one priority group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The config's order.
    #[default]
    Ordered,
    /// Smooth weighted round-robin over `weight`.
    Weighted,
    /// Fewest requests in flight; ties by weighted round-robin.
    LeastBusy,
    /// Lowest latency estimate, with some exploration of the others.
    Latency,
    /// Cheapest for this request.
    Cost,
    /// Most provider rate-limit headroom left.
    Usage,
}

impl Strategy {
    /// The config / metric spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ordered => "ordered",
            Self::Weighted => "weighted",
            Self::LeastBusy => "least_busy",
            Self::Latency => "latency",
            Self::Cost => "cost",
            Self::Usage => "usage",
        }
    }
}

/// What the strategies know about one deployment for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The deployment's position in its alias (0..n); keys the round-robin state and is what
    /// [`Selector::order`] returns.
    pub slot: usize,
    /// Share of traffic under `weighted` (and tie-break under `least_busy`); 0 = only when every
    /// weighted deployment of the group has failed.
    pub weight: u32,
    /// Lower values are tried first, always.
    pub priority: i32,
    pub in_flight: u64,
    /// [`super::health::DeploymentHealth::latency_score`]; `None` = not measured yet.
    pub latency: Option<Duration>,
    /// Expected cost of this request here, in nano-dollars; `None` = no price known.
    pub cost: Option<u64>,
    /// [`super::health::DeploymentHealth::headroom`]; `None` = no rate-limit header seen.
    pub headroom: Option<f64>,
}

// === impl Selector ===

/// Orders one alias's candidates. Shared by every request to the alias.
#[derive(Debug)]
pub struct Selector {
    strategy: Strategy,
    explore_rate: f64,
    /// Smooth weighted round-robin "current weight" per slot. Keyed by slot, not by position in
    /// the candidate list, so that a deployment filtered out of some calls (breaker open) does
    /// not shift the others' state.
    current: Mutex<Vec<i64>>,
}

impl Selector {
    /// `deployments` sizes the round-robin state (it grows if a larger slot shows up);
    /// `explore_rate` is clamped to 0..=1.
    pub fn new(strategy: Strategy, deployments: usize, explore_rate: f64) -> Self {
        let explore_rate = if explore_rate.is_nan() { 0.0 } else { explore_rate.clamp(0.0, 1.0) };
        Self { strategy, explore_rate, current: Mutex::new(vec![0; deployments]) }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Every candidate's slot, best first: priority groups in ascending order, each ordered by
    /// the strategy. Empty in, empty out.
    pub fn order(&self, candidates: &[Candidate], rng: &mut impl Rng) -> Vec<usize> {
        let mut sorted: Vec<&Candidate> = candidates.iter().collect();
        sorted.sort_by_key(|c| c.priority);
        let mut slots = Vec::with_capacity(candidates.len());
        for group in sorted.chunk_by(|a, b| a.priority == b.priority) {
            let mut group = group.to_vec();
            self.order_group(&mut group, rng);
            slots.extend(group.iter().map(|c| c.slot));
        }
        slots
    }

    /// Sorts are stable: equal candidates keep the config's order.
    fn order_group(&self, group: &mut Vec<&Candidate>, rng: &mut impl Rng) {
        match self.strategy {
            Strategy::Ordered => {}
            Strategy::Weighted => self.weighted(group),
            Strategy::LeastBusy => self.least_busy(group),
            Strategy::Latency => {
                // Unknown latency sorts as zero: an unmeasured deployment gets one request at
                // once and so a real estimate.
                group.sort_by_key(|c| c.latency.unwrap_or(Duration::ZERO));
                explore(group, self.explore_rate, rng);
            }
            // Unpriced deployments go after the priced ones: the operator chose this strategy to
            // save money, and a deployment without a price could cost anything.
            Strategy::Cost => group.sort_by_key(|c| (c.cost.is_none(), c.cost)),
            Strategy::Usage => group.sort_by(|a, b| {
                // No header seen = assume room; ties (typically before any header) go to the
                // less busy deployment, so the first responses do not all pile on one.
                let room = |c: &Candidate| c.headroom.unwrap_or(1.0);
                room(b).total_cmp(&room(a)).then(a.in_flight.cmp(&b.in_flight))
            }),
        }
    }

    /// Round-robin picks the first; the rest follow by weight, zero weights last.
    fn weighted(&self, group: &mut Vec<&Candidate>) {
        group.sort_by_key(|c| Reverse(c.weight));
        if let Some(pick) = self.round_robin(group) {
            move_to_front(group, pick);
        }
    }

    /// The least busy first; among equally busy ones round-robin picks, so an idle alias still
    /// splits by weight. Zero weights stay last resorts here too.
    fn least_busy(&self, group: &mut Vec<&Candidate>) {
        group.sort_by_key(|c| (c.weight == 0, c.in_flight, Reverse(c.weight)));
        let Some(first) = group.first() else { return };
        let key = (first.weight == 0, first.in_flight);
        let tied = group.iter().take_while(|c| (c.weight == 0, c.in_flight) == key).count();
        if let Some(pick) = self.round_robin(&group[..tied]) {
            move_to_front(group, pick);
        }
    }

    /// Smooth weighted round-robin (nginx): every candidate gains its weight, the largest
    /// current weight wins and pays back what was handed out. Deterministic, and picks are
    /// interleaved rather than in bursts.
    ///
    /// One change from nginx, for calls where some slots are filtered out (breaker open): each
    /// call hands out a fixed amount ([`SHARE`]) split by weight among the candidates present,
    /// rather than their raw weights. A slot's current weight is then exactly (in units of `SHARE`) the picks it was
    /// entitled to (its share of each call it took part in) minus the picks it got, so every
    /// slot stays within a pick or two of its entitlement however the candidate set varies. With raw
    /// weights, the credit of a slot frozen while absent skews the split of the others (5:3
    /// became 11:7 with a third slot present every other call). With a fixed set both agree.
    ///
    /// Returns the index of the pick in `group`, `None` when no candidate has a weight.
    fn round_robin(&self, group: &[&Candidate]) -> Option<usize> {
        let total: u64 = group.iter().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut current = self.current.lock();
        let mut handed_out: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in group.iter().enumerate().filter(|(_, c)| c.weight > 0) {
            if c.slot >= current.len() {
                current.resize(c.slot + 1, 0);
            }
            let share = share_of(c.weight, total);
            handed_out += share;
            current[c.slot] += share;
            if best.is_none_or(|(_, top)| current[c.slot] > top) {
                best = Some((i, current[c.slot]));
            }
        }
        let (pick, _) = best?;
        current[group[pick].slot] -= handed_out;
        Some(pick)
    }
}

/// What one round-robin call hands out: divisible by every total weight up to 28 (and by most
/// totals of small weights), so shares are usually exact and the picks match nginx's; otherwise
/// a share is rounded down by less than one part in 10^11, and since the pick pays back exactly
/// what was handed out, the rounding never accumulates. Current weights stay within a few
/// `SHARE`s of zero, far from `i64` limits.
const SHARE: i64 = 64 * 27 * 25 * 7 * 11 * 13 * 17 * 19 * 23;

/// `SHARE × weight / total`, for `0 < weight <= total`.
fn share_of(weight: u32, total: u64) -> i64 {
    let share = i128::from(SHARE) * i128::from(weight) / i128::from(total);
    i64::try_from(share).unwrap_or(SHARE)
}

fn move_to_front(group: &mut [&Candidate], index: usize) {
    if let Some(head) = group.get_mut(..=index) {
        head.rotate_right(1);
    }
}

/// With probability `rate`, a random other candidate goes first, so the deployments latency
/// routing does not favour keep getting measured; the fastest becomes second.
fn explore(group: &mut [&Candidate], rate: f64, rng: &mut impl Rng) {
    if group.len() > 1 && rng.random::<f64>() < rate {
        let other = rng.random_range(1..group.len());
        move_to_front(group, other);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn candidate(slot: usize) -> Candidate {
        Candidate { slot, weight: 1, priority: 0, in_flight: 0, latency: None, cost: None, headroom: None }
    }

    fn weighted(weights: &[u32]) -> Vec<Candidate> {
        weights.iter().enumerate().map(|(slot, &weight)| Candidate { weight, ..candidate(slot) }).collect()
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn first_picks(
        selector: &Selector,
        calls: usize,
        candidates: impl Fn(usize) -> Vec<Candidate>,
    ) -> Vec<usize> {
        let mut rng = rng();
        let mut counts = vec![0; 8];
        for call in 0..calls {
            let order = selector.order(&candidates(call), &mut rng);
            counts[order[0]] += 1;
        }
        counts
    }

    #[test]
    fn empty_input_gives_an_empty_order() {
        for strategy in [
            Strategy::Ordered,
            Strategy::Weighted,
            Strategy::LeastBusy,
            Strategy::Latency,
            Strategy::Cost,
            Strategy::Usage,
        ] {
            assert!(Selector::new(strategy, 0, 0.05).order(&[], &mut rng()).is_empty());
        }
    }

    #[test]
    fn ordered_keeps_the_config_order() {
        let selector = Selector::new(Strategy::Ordered, 3, 0.0);
        let candidates = vec![candidate(2), candidate(0), candidate(1)];
        assert_eq!(selector.order(&candidates, &mut rng()), vec![2, 0, 1]);
    }

    #[test]
    fn lower_priority_values_always_come_first() {
        let candidates = vec![
            Candidate { priority: 1, latency: Some(Duration::from_millis(1)), ..candidate(0) },
            Candidate { priority: 0, latency: Some(Duration::from_millis(900)), ..candidate(1) },
            Candidate { priority: -1, latency: Some(Duration::from_millis(500)), ..candidate(2) },
            Candidate { priority: 0, latency: Some(Duration::from_millis(100)), ..candidate(3) },
        ];
        let selector = Selector::new(Strategy::Latency, 4, 0.0);
        assert_eq!(selector.order(&candidates, &mut rng()), vec![2, 3, 1, 0]);
        let selector = Selector::new(Strategy::Ordered, 4, 0.0);
        assert_eq!(selector.order(&candidates, &mut rng()), vec![2, 1, 3, 0]);
    }

    #[test]
    fn weighted_splits_first_picks_exactly_by_weight() {
        let selector = Selector::new(Strategy::Weighted, 3, 0.0);
        assert_eq!(first_picks(&selector, 1000, |_| weighted(&[5, 3, 2]))[..3], [500, 300, 200]);
    }

    #[test]
    fn weighted_interleaves_and_orders_the_rest_by_weight() {
        let selector = Selector::new(Strategy::Weighted, 3, 0.0);
        let mut rng = rng();
        let orders: Vec<Vec<usize>> =
            (0..10).map(|_| selector.order(&weighted(&[5, 3, 2]), &mut rng)).collect();
        let firsts: Vec<usize> = orders.iter().map(|o| o[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 0, 1, 0, 2, 1, 0], "nginx's smooth sequence for 5:3:2");
        assert_eq!(orders[1], vec![1, 0, 2]);
        assert_eq!(orders[2], vec![2, 0, 1]);
    }

    #[test]
    fn weighted_state_survives_slots_filtered_out_of_some_calls() {
        let selector = Selector::new(Strategy::Weighted, 3, 0.0);
        // Slot 1 is filtered out (breaker open) for 160 calls: 0 and 2 split 5:2 among themselves.
        let without_1 =
            |_| vec![Candidate { weight: 5, ..candidate(0) }, Candidate { weight: 2, ..candidate(2) }];
        assert_eq!(first_picks(&selector, 700, without_1)[..3], [500, 0, 200]);
        // Back with all three, the split is exact again over whole cycles.
        assert_eq!(first_picks(&selector, 1000, |_| weighted(&[5, 3, 2]))[..3], [500, 300, 200]);
        // Slot 2 filtered out of every other call: each call is split by weight among the slots
        // present, so 0 and 1 still split 5:3 (0.5 + 5/8 and 0.3 + 3/8 per two calls).
        let alternating = |call: usize| {
            let all = weighted(&[5, 3, 2]);
            if call.is_multiple_of(2) { all } else { all.into_iter().filter(|c| c.slot != 2).collect() }
        };
        assert_eq!(first_picks(&selector, 1600, alternating)[..3], [900, 540, 160]);
    }

    #[test]
    fn weighted_stays_within_two_picks_of_each_slots_entitlement_under_random_filtering() {
        let weights = [7, 13, 1, 29, 4];
        let selector = Selector::new(Strategy::Weighted, weights.len(), 0.0);
        let mut filter = StdRng::seed_from_u64(3);
        let mut rng = rng();
        let mut picks = [0.0; 5];
        let mut entitled = [0.0; 5];
        for _ in 0..20_000 {
            let present: Vec<Candidate> =
                weighted(&weights).into_iter().filter(|_| filter.random_bool(0.7)).collect();
            let total: u32 = present.iter().map(|c| c.weight).sum();
            for c in &present {
                entitled[c.slot] += f64::from(c.weight) / f64::from(total);
            }
            if let Some(&first) = selector.order(&present, &mut rng).first() {
                picks[first] += 1.0;
            }
            for slot in 0..weights.len() {
                assert!((picks[slot] - entitled[slot]).abs() <= 2.0, "{picks:?} vs {entitled:?}");
            }
        }
    }

    #[test]
    fn weight_zero_is_only_a_last_resort() {
        let selector = Selector::new(Strategy::Weighted, 3, 0.0);
        let mut rng = rng();
        for _ in 0..50 {
            let order = selector.order(&weighted(&[0, 1, 3]), &mut rng);
            assert_eq!(order[2], 0, "{order:?}");
        }
        assert_eq!(selector.order(&weighted(&[0, 0]), &mut rng), vec![0, 1], "all zero: config order");
    }

    #[test]
    fn least_busy_goes_to_the_fewest_in_flight() {
        let selector = Selector::new(Strategy::LeastBusy, 3, 0.0);
        let candidates = vec![
            Candidate { in_flight: 4, ..candidate(0) },
            Candidate { in_flight: 1, ..candidate(1) },
            Candidate { in_flight: 2, ..candidate(2) },
        ];
        assert_eq!(selector.order(&candidates, &mut rng()), vec![1, 2, 0]);
    }

    #[test]
    fn least_busy_breaks_ties_by_weighted_round_robin() {
        let selector = Selector::new(Strategy::LeastBusy, 4, 0.0);
        let candidates = |_| {
            let mut all = weighted(&[3, 1, 5, 9]);
            all[3].in_flight = 1;
            all
        };
        assert_eq!(first_picks(&selector, 900, candidates)[..4], [300, 100, 500, 0]);
    }

    #[test]
    fn latency_prefers_the_fastest_and_explores_the_rest() {
        let selector = Selector::new(Strategy::Latency, 3, 0.05);
        let candidates = |_| {
            vec![
                Candidate { latency: Some(Duration::from_millis(300)), ..candidate(0) },
                Candidate { latency: Some(Duration::from_millis(100)), ..candidate(1) },
                Candidate { latency: Some(Duration::from_millis(200)), ..candidate(2) },
            ]
        };
        let counts = first_picks(&selector, 10_000, candidates);
        assert!((9_350..=9_650).contains(&counts[1]), "{counts:?}");
        assert!(counts[0] > 150 && counts[2] > 150, "both others explored: {counts:?}");
        let order = Selector::new(Strategy::Latency, 3, 0.0).order(&candidates(0), &mut rng());
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn latency_tries_unmeasured_deployments_first() {
        let selector = Selector::new(Strategy::Latency, 2, 0.0);
        let candidates =
            vec![Candidate { latency: Some(Duration::from_millis(1)), ..candidate(0) }, candidate(1)];
        assert_eq!(selector.order(&candidates, &mut rng()), vec![1, 0]);
    }

    #[test]
    fn cost_puts_the_cheapest_first_and_unpriced_last() {
        let selector = Selector::new(Strategy::Cost, 4, 0.0);
        let candidates = vec![
            candidate(0),
            Candidate { cost: Some(900), ..candidate(1) },
            Candidate { cost: Some(100), ..candidate(2) },
            Candidate { cost: Some(500), ..candidate(3) },
        ];
        assert_eq!(selector.order(&candidates, &mut rng()), vec![2, 3, 1, 0]);
    }

    #[test]
    fn usage_puts_the_most_headroom_first() {
        let selector = Selector::new(Strategy::Usage, 4, 0.0);
        let candidates = vec![
            Candidate { headroom: Some(0.2), ..candidate(0) },
            Candidate { headroom: Some(0.9), ..candidate(1) },
            Candidate { in_flight: 3, ..candidate(2) },
            Candidate { headroom: None, in_flight: 1, ..candidate(3) },
        ];
        assert_eq!(selector.order(&candidates, &mut rng()), vec![3, 2, 1, 0], "unknown = full room");
    }

    #[test]
    fn strategies_parse_from_snake_case() {
        let parsed: Vec<Strategy> =
            serde_json::from_str(r#"["ordered","weighted","least_busy","latency","cost","usage"]"#).unwrap();
        assert_eq!(
            parsed.iter().map(Strategy::as_str).collect::<Vec<_>>().join(","),
            "ordered,weighted,least_busy,latency,cost,usage"
        );
        assert_eq!(Strategy::default(), Strategy::Ordered);
    }
}
