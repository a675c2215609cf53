//! Enforcing limits on the request path: [`Enforcer::admit`] reserves every limit a request falls
//! under in one all-or-nothing call to the [`RateLimiter`] and returns a [`Charge`];
//! [`Enforcer::admit_deployment`] does the same for the deployment an attempt goes to; the
//! request's end settles the charge with the real tokens and cost ([`Charge::settle`]).
//!
//! Settling never waits on the request path: adjustments go through a bounded queue to one
//! background [`SettleWorker`], which batches them into few limiter calls and also checks budget
//! alert thresholds (deduplicated once per threshold per period, across nodes, through the
//! limiter itself).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_types::limits::Usd;
use tollgate_types::ports::{
    Adjustment, BudgetPeriod, Clock, LimitError, LimitKind, LimitStatus, ProviderError, ProviderErrorKind,
    RateLimiter, Reservation,
};
use tollgate_types::{ErrorKind, GatewayError};

use super::plan::{BudgetItem, Estimate, Plan};
use crate::alerts::{AlertNotifier, BudgetAlert};
use crate::auth::Principal;
use crate::config::{BudgetsConfig, LimitDefaults, LimitsConfig};
use crate::registry::Deployment;

/// Requests refused by a gateway limit, by `limit` (`requests`, `tokens`, `concurrency`,
/// `budget`).
pub const LIMIT_REFUSALS: &str = "tollgate_limit_refusals_total";
/// Settlements that could not be queued (the worker is far behind); their reservations stay
/// charged and concurrency slots expire after the limiter's maximum hold time.
pub const SETTLE_DROPPED: &str = "tollgate_limiter_settle_dropped_total";

/// Queue bound between requests and the settle worker.
const QUEUE: usize = 65_536;
/// Settlements merged into one limiter call.
const BATCH: usize = 256;
/// Alert dedup entries remembered locally before the set is cleared (the limiter still
/// deduplicates, this only saves it the calls).
const SENT_MAX: usize = 100_000;

/// Admits requests against their limits.
pub struct Enforcer {
    limiter: Arc<dyn RateLimiter>,
    defaults: LimitDefaults,
    default_max_output_tokens: u64,
    alert_percents: Vec<u8>,
    queue: mpsc::Sender<Work>,
    clock: Arc<dyn Clock>,
    /// The plan of callers no tenant limit applies to (the super-admin).
    unlimited: Arc<Plan>,
}

enum Work {
    Settle(Vec<Adjustment>),
    Budget(BudgetCheck),
}

/// A budget that was charged (or refused) at admission, to compare with its alert thresholds.
struct BudgetCheck {
    item: BudgetItem,
    /// Spent (settled plus in flight) before this request; the limit when a request was refused.
    spent: u64,
    percents: Vec<u8>,
    at: OffsetDateTime,
}

/// What a deployment's own limits had left after an attempt's reservation: `(remaining,
/// limit)` of its requests and tokens per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headroom {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

/// What the request's answer says about the caller's limits (`x-ratelimit-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// The requests-per-minute limit with the least room left, if any.
    pub requests: Option<LimitStatus>,
    /// The tokens-per-minute limit with the least room left, if any.
    pub tokens: Option<LimitStatus>,
}

/// What one request has reserved; settle it with the real amounts when the request ends.
/// Dropping it unsettled (the client went away before an answer) releases its concurrency slots
/// and keeps the reservations: the upstream may have billed the call.
pub struct Charge {
    enforcer: Option<Arc<Enforcer>>,
    estimate: Estimate,
    /// The plan whose reservations were charged (`None`: nothing was, e.g. a fail-open
    /// admission while the limiter was down).
    plan: Option<Arc<Plan>>,
    /// The plans of the deployments charged for this request's attempts still running (by
    /// deployment index): one, or two while a hedged attempt races the first.
    deployments: Mutex<Vec<(usize, Arc<Plan>)>>,
    settled: AtomicBool,
    pub headers: RateLimitHeaders,
}

impl Enforcer {
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        limits: &LimitsConfig,
        budgets: &BudgetsConfig,
        notifier: Option<AlertNotifier>,
        clock: Arc<dyn Clock>,
    ) -> (Arc<Self>, SettleWorker) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let enforcer = Arc::new(Self {
            limiter: limiter.clone(),
            defaults: limits.defaults.clone(),
            default_max_output_tokens: limits.default_max_output_tokens,
            alert_percents: budgets.alert_at_percent.clone(),
            queue: tx,
            clock: clock.clone(),
            unlimited: Arc::new(Plan::default()),
        });
        let worker = SettleWorker { rx, limiter, notifier, clock, sent: std::collections::HashSet::new() };
        (enforcer, worker)
    }

    /// The limits a request by `principal` to `alias` falls under (no I/O; built once per
    /// cached principal and alias).
    pub fn plan(&self, principal: &Principal, alias: &str) -> Arc<Plan> {
        match principal {
            Principal::Key(k) => {
                k.plans.get_or_build(alias, || Plan::for_request(principal, alias, &self.defaults))
            }
            Principal::SuperAdmin => self.unlimited.clone(),
        }
    }

    /// Output tokens assumed for a budget reservation when the request sets no maximum.
    pub fn default_max_output_tokens(&self) -> u64 {
        self.default_max_output_tokens
    }

    /// Reserves every limit of `plan`; the error names the limit that refused.
    pub async fn admit(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        estimate: Estimate,
    ) -> Result<Charge, GatewayError> {
        let mut charge = Charge::new(Some(self.clone()), estimate);
        if plan.is_empty() {
            return Ok(charge);
        }
        let reservations = plan.reservations(estimate);
        let admission = match self.limiter.reserve(&reservations).await {
            Ok(a) => a,
            Err(e) => {
                if let LimitError::Exceeded { name, .. } = &e
                    && let Some(i) = reservations.iter().position(|r| r.name == *name)
                    && let Some(b) = plan.budget_at(i)
                {
                    self.check_budget(b, b.spec.limit_usd.nanodollars);
                }
                return Err(refused(&reservations, e, self.clock.now_utc()));
            }
        };
        for (i, (r, status)) in reservations.iter().zip(&admission.limits).enumerate() {
            match r.kind {
                LimitKind::Concurrency => {}
                LimitKind::Calendar { .. } => {
                    if !admission.degraded
                        && let Some(b) = plan.budget_at(i)
                    {
                        let spent = status.limit.saturating_sub(status.remaining).saturating_sub(r.amount);
                        self.check_budget(b, spent);
                    }
                }
                LimitKind::Window { .. } if plan.is_tokens_at(i) => {
                    keep_tightest(&mut charge.headers.tokens, status)
                }
                LimitKind::Window { .. } => keep_tightest(&mut charge.headers.requests, status),
            }
        }
        if !admission.degraded {
            charge.plan = Some(plan.clone());
        }
        Ok(charge)
    }

    /// Reserves the limits of the deployment an attempt is about to use, and says how much
    /// room they have left (for usage-based routing). A refusal is an attempt failure (rate
    /// limited), so the caller falls through to the next deployment.
    pub async fn admit_deployment(&self, charge: &Charge, d: &Deployment) -> Result<Headroom, ProviderError> {
        if d.limit_plan.is_empty() {
            return Ok(Headroom::default());
        }
        let reservations = d.limit_plan.reservations(charge.estimate);
        match self.limiter.reserve(&reservations).await {
            Ok(admission) => {
                let mut room = Headroom::default();
                if !admission.degraded {
                    charge.deployments.lock().push((d.index, d.limit_plan.clone()));
                    for (i, status) in admission.limits.iter().enumerate() {
                        let left = Some((status.remaining, status.limit));
                        match reservations[i].kind {
                            LimitKind::Window { .. } if d.limit_plan.is_tokens_at(i) => room.tokens = left,
                            LimitKind::Window { .. } => room.requests = left,
                            _ => {}
                        }
                    }
                }
                Ok(room)
            }
            Err(LimitError::Exceeded { name, limit, retry_after }) => {
                metrics::counter!(LIMIT_REFUSALS, "limit" => limit_label(&name)).increment(1);
                Err(ProviderError::new(
                    d.provider_kind,
                    ProviderErrorKind::RateLimited,
                    format!("the gateway's {name} is reached (limit {limit})"),
                )
                .with_retry_after(retry_after))
            }
            Err(LimitError::Unavailable(e)) => Err(ProviderError::new(
                d.provider_kind,
                ProviderErrorKind::Overloaded,
                format!("the rate limiter is unavailable: {e}"),
            )),
        }
    }

    fn send(&self, work: Work) {
        // An in-process limiter settles at once: no queue hop, no extra task wake-up.
        if let Work::Settle(adjustments) = &work
            && self.limiter.is_local()
        {
            if let Some(Err(e)) = self.limiter.settle(adjustments).now_or_never() {
                tracing::warn!(error = %e, "could not settle rate-limit reservations");
            }
            return;
        }
        if self.queue.try_send(work).is_err() {
            metrics::counter!(SETTLE_DROPPED).increment(1);
            tracing::warn!("limit settlement queue is full; a settlement was dropped");
        }
    }

    fn check_budget(&self, item: &BudgetItem, spent: u64) {
        let percents = item.spec.alert_at_percent.clone().unwrap_or_else(|| self.alert_percents.clone());
        let limit = item.spec.limit_usd.nanodollars;
        let crossed = percents.iter().any(|&p| u128::from(spent) * 100 >= u128::from(p) * u128::from(limit));
        if crossed {
            self.send(Work::Budget(BudgetCheck {
                item: item.clone(),
                spent,
                percents,
                at: self.clock.now_utc(),
            }));
        }
    }
}

fn keep_tightest(slot: &mut Option<LimitStatus>, status: &LimitStatus) {
    if slot.as_ref().is_none_or(|s| status.remaining < s.remaining) {
        *slot = Some(status.clone());
    }
}

fn limit_label(name: &str) -> &'static str {
    if name.starts_with("requests") {
        "requests"
    } else if name.starts_with("tokens") {
        "tokens"
    } else if name.starts_with("concurrent") {
        "concurrency"
    } else {
        "budget"
    }
}

/// The client's error for a refused admission.
fn refused(reservations: &[Reservation], e: LimitError, now: OffsetDateTime) -> GatewayError {
    match e {
        LimitError::Unavailable(_) => GatewayError::new(
            ErrorKind::Unavailable,
            "The gateway's rate limiter is unavailable and this gateway refuses requests until it is back (limits.on_backend_failure: closed).",
        ),
        LimitError::Exceeded { name, limit, retry_after } => {
            metrics::counter!(LIMIT_REFUSALS, "limit" => limit_label(&name)).increment(1);
            let r = reservations.iter().find(|r| r.name == name);
            let mut err = match r.map(|r| (r.kind, r.amount)) {
                Some((LimitKind::Calendar { period }, amount)) => GatewayError::new(
                    ErrorKind::BudgetExceeded,
                    budget_message(&name, limit, amount, period, now),
                ),
                Some((_, amount)) if retry_after.is_none() && amount > limit => GatewayError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "This request needs {amount} against the {name}, more than its limit of {limit}: it cannot be admitted; make it smaller or ask for a higher limit."
                    ),
                ),
                _ => {
                    let wait =
                        retry_after.map(|d| format!(" Try again in {}.", reset_text(d))).unwrap_or_default();
                    GatewayError::new(
                        ErrorKind::RateLimited,
                        format!("Rate limit reached for the {name} (limit {limit}).{wait}"),
                    )
                }
            };
            err.retry_after = retry_after;
            err
        }
    }
}

fn budget_message(name: &str, limit: u64, amount: u64, period: BudgetPeriod, now: OffsetDateTime) -> String {
    let cap = Usd::from_nanodollars(limit);
    let needs = Usd::from_nanodollars(amount);
    let reset = match period.end(now) {
        Some(end) => {
            let at = end.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            format!("it resets at {at}")
        }
        None => "it does not reset; an administrator can raise it".to_owned(),
    };
    format!(
        "The {name} (${cap}) does not have the ${needs} this request may cost (its input plus maximum output); {reset}."
    )
}

/// `1s`, `6m0s`, `1h2m3s`, `250ms`: the style of OpenAI's `x-ratelimit-reset-*` headers.
pub fn reset_text(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis().max(1));
    }
    let secs = d.as_secs_f64().ceil() as u64;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

// === impl Charge ===

impl Charge {
    fn new(enforcer: Option<Arc<Enforcer>>, estimate: Estimate) -> Self {
        Self {
            enforcer,
            estimate,
            plan: None,
            deployments: Mutex::new(Vec::new()),
            settled: AtomicBool::new(false),
            headers: RateLimitHeaders::default(),
        }
    }

    /// A charge that limits nothing (no enforcer configured).
    pub fn none() -> Self {
        Self::new(None, Estimate::default())
    }

    /// The request is over: correct the estimates with what it really took and release its
    /// slots. `cost` is `None` when the model has no price (the budget reservation is returned).
    pub fn settle(&self, tokens: u64, cost: Option<u64>) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let tokens = delta(tokens, self.estimate.tokens);
        let cost = delta(cost.unwrap_or(0), self.estimate.cost);
        let deployments = std::mem::take(&mut *self.deployments.lock());
        self.correct(tokens, cost, deployments, tokens);
    }

    /// An attempt on deployment `index` failed: give its tokens and slot back.
    pub fn release_deployment(&self, index: usize) {
        self.give_back(index, delta(0, self.estimate.tokens));
    }

    /// An attempt on deployment `index` was cancelled (it lost a hedged race): its slot is
    /// released, its request and token reservations stay, since the upstream may have counted
    /// the call against its quota.
    pub fn cancel_deployment(&self, index: usize) {
        self.give_back(index, 0);
    }

    fn give_back(&self, index: usize, tokens: i64) {
        let plan = {
            let mut held = self.deployments.lock();
            let Some(at) = held.iter().position(|(i, _)| *i == index) else { return };
            held.swap_remove(at).1
        };
        let mut adjustments = Vec::new();
        plan.adjustments(tokens, 0, &mut adjustments);
        self.send(adjustments);
    }

    /// Sends the corrections of the request's plan (`tokens`, `cost`) and of the deployment
    /// plans still held (`deployment_tokens`); slots are released in all.
    fn correct(&self, tokens: i64, cost: i64, deployments: Vec<(usize, Arc<Plan>)>, deployment_tokens: i64) {
        let mut adjustments = Vec::new();
        if let Some(plan) = &self.plan {
            plan.adjustments(tokens, cost, &mut adjustments);
        }
        for (_, plan) in deployments {
            plan.adjustments(deployment_tokens, 0, &mut adjustments);
        }
        self.send(adjustments);
    }

    fn send(&self, adjustments: Vec<Adjustment>) {
        if let Some(enforcer) = &self.enforcer
            && !adjustments.is_empty()
        {
            enforcer.send(Work::Settle(adjustments));
        }
    }
}

impl Drop for Charge {
    /// Unsettled: the client went away before an answer. Slots are released; token and budget
    /// reservations stay charged, since the upstream may have billed the call.
    fn drop(&mut self) {
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let deployments = std::mem::take(&mut *self.deployments.lock());
        self.correct(0, 0, deployments, 0);
    }
}

fn delta(real: u64, reserved: u64) -> i64 {
    let d = i128::from(real) - i128::from(reserved);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

// === worker ===

/// Applies settlements and sends budget alerts, off the request path.
pub struct SettleWorker {
    rx: mpsc::Receiver<Work>,
    limiter: Arc<dyn RateLimiter>,
    notifier: Option<AlertNotifier>,
    clock: Arc<dyn Clock>,
    sent: std::collections::HashSet<String>,
}

impl SettleWorker {
    /// Runs until `shutdown`, then applies what is still queued.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                work = self.rx.recv() => match work {
                    Some(w) => w,
                    None => return,
                },
            };
            self.handle(first).await;
        }
        self.rx.close();
        while let Some(work) = self.rx.recv().await {
            self.handle(work).await;
        }
    }

    async fn handle(&mut self, first: Work) {
        let mut batch = Vec::new();
        let mut checks = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(work) = next.take() {
            match work {
                Work::Settle(adjustments) => batch.extend(adjustments),
                Work::Budget(check) => checks.push(check),
            }
            taken += 1;
            if taken < BATCH {
                next = self.rx.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(e) = self.limiter.settle(&batch).await
        {
            tracing::warn!(error = %e, adjustments = batch.len(), "could not settle rate-limit reservations");
        }
        for check in checks {
            self.alert(check).await;
        }
    }

    /// Sends each threshold `check` has crossed, once per period across every node: the first
    /// node to take the one-unit "alert" counter of that threshold and period sends it.
    async fn alert(&mut self, check: BudgetCheck) {
        let item = &check.item;
        let limit = item.spec.limit_usd.nanodollars;
        let period = item.spec.period;
        let label = period.label(check.at);
        for &percent in &check.percents {
            if u128::from(check.spent) * 100 < u128::from(percent) * u128::from(limit) {
                continue;
            }
            let local = format!("{}:{label}:{percent}", item.key);
            if self.sent.contains(&local) {
                continue;
            }
            if self.sent.len() >= SENT_MAX {
                self.sent.clear();
            }
            self.sent.insert(local);
            let dedup = Reservation {
                key: format!("alert:{}:{percent}", item.key).into(),
                kind: LimitKind::Calendar { period },
                limit: 1,
                amount: 1,
                name: "budget alert".into(),
            };
            match self.limiter.reserve(&[dedup]).await {
                Ok(_) => {}
                Err(LimitError::Exceeded { .. }) => continue,
                Err(LimitError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "budget alert sent without cross-node deduplication");
                }
            }
            let alert = BudgetAlert {
                id: uuid::Uuid::now_v7(),
                kind: BudgetAlert::KIND,
                tenant_id: item.tenant_id,
                scope: item.scope.as_str().to_owned(),
                scope_id: item.scope_id.clone(),
                period,
                period_label: label.clone(),
                threshold_percent: percent,
                limit_usd: item.spec.limit_usd,
                spent_usd: Usd::from_nanodollars(check.spent),
                at: self.clock.now_utc(),
            };
            match &self.notifier {
                Some(n) => n.notify(alert),
                None => tracing::warn!(
                    tenant_id = %item.tenant_id.0,
                    scope = item.scope.as_str(),
                    scope_id = %item.scope_id,
                    period = period.as_str(),
                    threshold_percent = percent,
                    limit_usd = %item.spec.limit_usd,
                    spent_usd = %Usd::from_nanodollars(check.spent),
                    "budget alert threshold reached"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tollgate_types::limits::RateLimits;
    use tollgate_types::ports::SystemClock;

    use super::*;
    use crate::limits::MemoryRateLimiter;

    /// What a deployment plan's counters hold: (requests, tokens, slots) in use.
    async fn used(limiter: &MemoryRateLimiter, plan: &Plan) -> (u64, u64, u64) {
        // A zero-amount reservation reads the counters without charging them.
        let probe = plan.reservations(Estimate { tokens: 0, cost: 0 });
        let probe: Vec<_> = probe.into_iter().map(|r| Reservation { amount: 0, ..r }).collect();
        let a = limiter.reserve(&probe).await.unwrap();
        let used = |i: usize| a.limits[i].limit - a.limits[i].remaining;
        (used(0), used(1), used(2))
    }

    #[tokio::test]
    async fn a_hedged_request_holds_two_deployments_and_gives_each_back_its_own_way() {
        let limiter = Arc::new(MemoryRateLimiter::new(Arc::new(SystemClock)));
        let limits_config = LimitsConfig {
            backend: crate::config::LimiterBackend::Memory,
            on_backend_failure: crate::limits::FailurePolicy::Closed,
            timeout: Duration::from_millis(50),
            default_max_output_tokens: 100,
            defaults: LimitDefaults::default(),
        };
        let budgets = BudgetsConfig {
            alert_at_percent: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(1),
        };
        let (enforcer, _worker) =
            Enforcer::new(limiter.clone(), &limits_config, &budgets, None, Arc::new(SystemClock));
        let limits = RateLimits { rpm: Some(100), tpm: Some(10_000), max_concurrent: Some(5) };
        let (first, hedge) = (
            Arc::new(Plan::for_deployment("first", limits)),
            Arc::new(Plan::for_deployment("hedge", limits)),
        );
        let estimate = Estimate { tokens: 300, cost: 0 };
        let charge = Charge::new(Some(enforcer), estimate);
        for (index, plan) in [(1, &first), (2, &hedge)] {
            limiter.reserve(&plan.reservations(estimate)).await.unwrap();
            charge.deployments.lock().push((index, plan.clone()));
        }
        assert_eq!(used(&limiter, &first).await, (1, 300, 1));

        // The loser of the race: its slot comes back, its request and tokens stay counted.
        charge.cancel_deployment(1);
        assert_eq!(used(&limiter, &first).await, (1, 300, 0));
        charge.cancel_deployment(1);
        assert_eq!(used(&limiter, &first).await, (1, 300, 0), "given back once only");

        // The winner settles with its real tokens.
        charge.settle(120, None);
        assert_eq!(used(&limiter, &hedge).await, (1, 120, 0));

        // A failed attempt gives everything but the request back.
        let third = Arc::new(Plan::for_deployment("third", limits));
        let charge = Charge::new(charge.enforcer.clone(), estimate);
        limiter.reserve(&third.reservations(estimate)).await.unwrap();
        charge.deployments.lock().push((3, third.clone()));
        charge.release_deployment(3);
        assert_eq!(used(&limiter, &third).await, (1, 0, 0));
    }

    #[test]
    fn reset_text_follows_openai_style() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_millis(1200)), "2s");
        assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset_text(Duration::from_secs(3723)), "1h2m3s");
    }
}
