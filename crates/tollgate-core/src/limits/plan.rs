//! Which limits a request falls under: the caller's key, project and tenant (each with the
//! configured defaults filling what it does not set), per model alias within each, and the
//! deployment that serves it. A [`Plan`] is built without I/O; turning it into
//! [`Reservation`]s needs the request's estimates (tokens, worst-case cost), which are only
//! computed when some limit needs them.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tollgate_types::limits::{BudgetSpec, LimitPolicy, RateLimits};
use tollgate_types::ports::{Adjustment, LimitKind, Reservation};
use tollgate_types::tenancy::TenantId;

use crate::auth::Principal;
use crate::config::LimitDefaults;

const MINUTE: Duration = Duration::from_secs(60);

/// Where a limit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Key,
    Project,
    Tenant,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Project => "project",
            ScopeKind::Tenant => "tenant",
        }
    }
}

/// One budget of one scope.
#[derive(Debug, Clone)]
pub struct BudgetItem {
    pub tenant_id: TenantId,
    pub scope: ScopeKind,
    pub scope_id: String,
    /// Counter key (the period is part of it, so changing a budget's period starts afresh).
    pub key: Arc<str>,
    pub spec: BudgetSpec,
}

/// What a reservation takes from a request's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    One,
    Tokens,
    Cost,
}

/// Every limit one request (or one deployment attempt) falls under, with its reservations built
/// once: keys and names are shared strings, so a request only fills in the amounts.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    templates: Vec<(Reservation, Amount)>,
    pub budgets: Vec<BudgetItem>,
}

/// What a request is estimated to take, for the reservations that need it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Input estimate plus the requested maximum output.
    pub tokens: u64,
    /// Worst-case cost in nano-dollars (input estimate + maximum output at the highest price
    /// among the alias's deployments, markup included).
    pub cost: u64,
}

impl Plan {
    /// The plan of a request by `principal` to `alias`.
    pub fn for_request(principal: &Principal, alias: &str, defaults: &LimitDefaults) -> Plan {
        let mut plan = Plan::default();
        let Principal::Key(k) = principal else { return plan };
        let scopes: [(ScopeKind, &LimitPolicy, &LimitPolicy, String, &str, &str); 3] = [
            (ScopeKind::Key, &k.limits.key, &defaults.key, k.key_id.0.to_string(), "k", "this API key"),
            (
                ScopeKind::Project,
                &k.limits.project,
                &defaults.project,
                k.project_id.0.to_string(),
                "p",
                "this project",
            ),
            (
                ScopeKind::Tenant,
                &k.limits.tenant,
                &defaults.tenant,
                k.tenant_id.0.to_string(),
                "t",
                "this tenant",
            ),
        ];
        let mut budgets = Vec::new();
        for (scope, own, default, id, tag, label) in scopes {
            let prefix = format!("{tag}:{id}");
            plan.push_rates(&prefix, label, own.rate.or(default.rate));
            let model_rates = match (own.models.get(alias), default.models.get(alias)) {
                (Some(o), Some(d)) => o.or(*d),
                (Some(o), None) => *o,
                (None, Some(d)) => *d,
                (None, None) => RateLimits::default(),
            };
            plan.push_rates(
                &format!("{prefix}:m:{alias}"),
                &format!("model {alias} for {label}"),
                model_rates,
            );
            let specs = if own.budgets.is_empty() { &default.budgets } else { &own.budgets };
            for spec in specs {
                let key: Arc<str> = format!("{prefix}:budget:{}", spec.period.as_str()).into();
                budgets.push((
                    Reservation {
                        key: key.clone(),
                        kind: LimitKind::Calendar { period: spec.period },
                        limit: spec.limit_usd.nanodollars,
                        amount: 0,
                        name: format!("{} budget of {label}", spec.period.as_str()).into(),
                    },
                    BudgetItem {
                        tenant_id: k.tenant_id,
                        scope,
                        scope_id: id.clone(),
                        key,
                        spec: spec.clone(),
                    },
                ));
            }
        }
        // Budgets last: a request over a rate limit is refused as such, not as over budget.
        for (r, item) in budgets {
            plan.templates.push((r, Amount::Cost));
            plan.budgets.push(item);
        }
        plan
    }

    /// The plan of an attempt on a deployment with `limits` (its provider account's quota).
    pub fn for_deployment(name: &str, limits: RateLimits) -> Plan {
        let mut plan = Plan::default();
        plan.push_rates(&format!("d:{name}"), &format!("deployment {name}"), limits);
        plan
    }

    /// Requests, tokens and in-flight reservations of one scope.
    fn push_rates(&mut self, prefix: &str, label: &str, l: RateLimits) {
        let mut push = |suffix: &str, kind, limit, amount, what: &str| {
            let r = Reservation {
                key: format!("{prefix}:{suffix}").into(),
                kind,
                limit,
                amount: 0,
                name: format!("{what} of {label}").into(),
            };
            self.templates.push((r, amount));
        };
        let window = LimitKind::Window { period: MINUTE };
        if let Some(rpm) = l.rpm {
            push("rpm", window, rpm, Amount::One, "requests per minute");
        }
        if let Some(tpm) = l.tpm {
            push("tpm", window, tpm, Amount::Tokens, "tokens per minute");
        }
        if let Some(max) = l.max_concurrent {
            push("conc", LimitKind::Concurrency, max, Amount::One, "concurrent requests");
        }
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn needs_tokens(&self) -> bool {
        self.templates.iter().any(|(_, a)| *a == Amount::Tokens)
    }

    pub fn needs_cost(&self) -> bool {
        !self.budgets.is_empty()
    }

    /// The reservations with this request's amounts, in order: rate limits by scope (key,
    /// project, tenant, each followed by its per-model limits), then budgets.
    pub fn reservations(&self, estimate: Estimate) -> Vec<Reservation> {
        self.templates
            .iter()
            .map(|(r, amount)| Reservation {
                amount: match amount {
                    Amount::One => 1,
                    Amount::Tokens => estimate.tokens,
                    Amount::Cost => estimate.cost,
                },
                ..r.clone()
            })
            .collect()
    }

    /// Whether the `i`-th reservation counts tokens.
    pub fn is_tokens_at(&self, i: usize) -> bool {
        self.templates.get(i).is_some_and(|(_, a)| *a == Amount::Tokens)
    }

    /// The budget the `i`-th reservation charges, if it is one (budgets come last, in order).
    pub fn budget_at(&self, i: usize) -> Option<&BudgetItem> {
        let first = self.templates.len() - self.budgets.len();
        i.checked_sub(first).and_then(|j| self.budgets.get(j))
    }

    /// The corrections of a request that reserved this plan: `tokens` on every token window,
    /// `cost` on every budget (both differences from the estimate; zero ones are left out), and
    /// one slot released per concurrency limit.
    pub fn adjustments(&self, tokens: i64, cost: i64, out: &mut Vec<Adjustment>) {
        for (r, amount) in &self.templates {
            let delta = match (r.kind, amount) {
                (LimitKind::Concurrency, _) => -1,
                (_, Amount::Tokens) => tokens,
                (_, Amount::Cost) => cost,
                (_, Amount::One) => 0,
            };
            if delta != 0 {
                out.push(Adjustment { key: r.key.clone(), kind: r.kind, delta });
            }
        }
    }
}

/// The limits stored with a key's scopes, as carried by its cached principal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeLimits {
    pub key: LimitPolicy,
    pub project: LimitPolicy,
    pub tenant: LimitPolicy,
}

/// A principal's plans by model alias, built on first use. It lives in the cached principal,
/// so a change to the key's, project's or tenant's limits (which replaces the principal) starts
/// a fresh cache.
#[derive(Default)]
pub struct PlanCache(RwLock<Vec<(Box<str>, Arc<Plan>)>>);

/// Aliases one key's cache holds before it is cleared (a key calls few models).
const PLANS_PER_KEY: usize = 64;

impl PlanCache {
    pub fn get_or_build(&self, alias: &str, build: impl FnOnce() -> Plan) -> Arc<Plan> {
        if let Some((_, plan)) = self.0.read().iter().find(|(a, _)| &**a == alias) {
            return plan.clone();
        }
        let plan = Arc::new(build());
        let mut plans = self.0.write();
        if plans.len() >= PLANS_PER_KEY {
            plans.clear();
        }
        plans.push((alias.into(), plan.clone()));
        plan
    }
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache(..)")
    }
}

impl Clone for PlanCache {
    /// A clone starts empty: plans are derived data.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for PlanCache {
    /// Derived data: never part of a principal's identity.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_types::limits::Usd;
    use tollgate_types::ports::BudgetPeriod;
    use tollgate_types::tenancy::TenantId;
    use uuid::Uuid;

    use super::*;
    use crate::auth::KeyPrincipal;

    fn principal(limits: ScopeLimits) -> Principal {
        Principal::Key(Arc::new(KeyPrincipal {
            limits,
            ..KeyPrincipal::sample(TenantId(Uuid::from_u128(2)))
        }))
    }

    #[test]
    fn own_limits_win_field_by_field_over_defaults_and_models_are_separate() {
        let mut limits = ScopeLimits::default();
        limits.key.rate.rpm = Some(10);
        limits.tenant.models.insert("gpt-4o".into(), RateLimits { tpm: Some(500), ..RateLimits::default() });
        let mut defaults = LimitDefaults::default();
        defaults.key.rate = RateLimits { rpm: Some(100), tpm: Some(1000), max_concurrent: None };
        defaults.project.budgets.push(BudgetSpec {
            period: BudgetPeriod::Month,
            limit_usd: Usd::parse("5").unwrap(),
            alert_at_percent: None,
        });

        let plan = Plan::for_request(&principal(limits.clone()), "gpt-4o", &defaults);
        let names: Vec<String> = plan
            .reservations(Estimate { tokens: 42, cost: 7 })
            .into_iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "requests per minute of this API key",
                "tokens per minute of this API key",
                "tokens per minute of model gpt-4o for this tenant",
                "month budget of this project",
            ]
        );
        let r = plan.reservations(Estimate { tokens: 42, cost: 7 });
        assert_eq!((r[0].limit, r[0].amount), (10, 1), "the key's own rpm wins over the default");
        assert_eq!((r[1].limit, r[1].amount), (1000, 42), "the default tpm fills the gap");
        assert_eq!(&*r[2].key, format!("t:{}:m:gpt-4o:tpm", Uuid::from_u128(2)));
        assert_eq!((r[3].limit, r[3].amount), (5_000_000_000, 7));
        assert!(plan.needs_tokens() && plan.needs_cost());

        // Another model: no per-model limit.
        let other = Plan::for_request(&principal(limits), "echo", &defaults);
        assert_eq!(
            other.reservations(Estimate::default()).len(),
            3,
            "the key's rpm and tpm and the project budget; no model limit"
        );
        // The super-admin has no tenant limits.
        assert!(Plan::for_request(&Principal::SuperAdmin, "gpt-4o", &defaults).is_empty());
    }

    #[test]
    fn own_budgets_replace_the_default_list() {
        let mut limits = ScopeLimits::default();
        let day = BudgetSpec {
            period: BudgetPeriod::Day,
            limit_usd: Usd::parse("1").unwrap(),
            alert_at_percent: None,
        };
        limits.project.budgets.push(day);
        let mut defaults = LimitDefaults::default();
        defaults.project.budgets.push(BudgetSpec {
            period: BudgetPeriod::Month,
            limit_usd: Usd::parse("5").unwrap(),
            alert_at_percent: None,
        });
        let plan = Plan::for_request(&principal(limits), "m", &defaults);
        assert_eq!(plan.budgets.len(), 1);
        assert_eq!(plan.budgets[0].spec.period, BudgetPeriod::Day);
        assert!(!plan.needs_tokens());
    }
}
