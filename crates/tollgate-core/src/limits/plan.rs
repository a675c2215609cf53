//! Which limits a request falls under: the caller's key, project and tenant (each with the
//! configured defaults filling what it does not set), per model alias within each, and the
//! deployment that serves it. A [`Plan`] is built without I/O; turning it into
//! [`Reservation`]s needs the request's estimates (tokens, worst-case cost), which are only
//! computed when some limit needs them.

use std::time::Duration;

use tollgate_types::limits::{BudgetSpec, LimitPolicy, RateLimits};
use tollgate_types::ports::{LimitKind, Reservation};
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
    Deployment,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Project => "project",
            ScopeKind::Tenant => "tenant",
            ScopeKind::Deployment => "deployment",
        }
    }
}

/// The rate limits of one scope (optionally narrowed to a model alias).
#[derive(Debug, Clone)]
pub struct RateItem {
    /// Counter key prefix: `k:<key id>`, `t:<tenant id>:m:<alias>`, `d:<deployment>`.
    pub prefix: String,
    /// How messages name the scope: "this API key", "model gpt-4o for this tenant".
    pub label: String,
    pub limits: RateLimits,
}

/// One budget of one scope.
#[derive(Debug, Clone)]
pub struct BudgetItem {
    pub tenant_id: TenantId,
    pub scope: ScopeKind,
    pub scope_id: String,
    /// Counter key (the period is part of it, so changing a budget's period starts afresh).
    pub key: String,
    pub label: String,
    pub spec: BudgetSpec,
}

/// Every limit one request falls under (before the deployment is chosen).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub rates: Vec<RateItem>,
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
        let scopes: [(ScopeKind, &LimitPolicy, &LimitPolicy, String, String, &str); 3] = [
            (
                ScopeKind::Key,
                &k.limits.key,
                &defaults.key,
                k.key_id.0.to_string(),
                "k".to_owned(),
                "this API key",
            ),
            (
                ScopeKind::Project,
                &k.limits.project,
                &defaults.project,
                k.project_id.0.to_string(),
                "p".to_owned(),
                "this project",
            ),
            (
                ScopeKind::Tenant,
                &k.limits.tenant,
                &defaults.tenant,
                k.tenant_id.0.to_string(),
                "t".to_owned(),
                "this tenant",
            ),
        ];
        for (scope, own, default, id, tag, label) in scopes {
            let prefix = format!("{tag}:{id}");
            let rates = own.rate.or(default.rate);
            if !rates.is_empty() {
                plan.rates.push(RateItem { prefix: prefix.clone(), label: label.to_owned(), limits: rates });
            }
            let model_rates = match (own.models.get(alias), default.models.get(alias)) {
                (Some(o), Some(d)) => o.or(*d),
                (Some(o), None) => *o,
                (None, Some(d)) => *d,
                (None, None) => RateLimits::default(),
            };
            if !model_rates.is_empty() {
                plan.rates.push(RateItem {
                    prefix: format!("{prefix}:m:{alias}"),
                    label: format!("model {alias} for {label}"),
                    limits: model_rates,
                });
            }
            let budgets = if own.budgets.is_empty() { &default.budgets } else { &own.budgets };
            for spec in budgets {
                plan.budgets.push(BudgetItem {
                    tenant_id: k.tenant_id,
                    scope,
                    scope_id: id.clone(),
                    key: format!("{prefix}:budget:{}", spec.period.as_str()),
                    label: label.to_owned(),
                    spec: spec.clone(),
                });
            }
        }
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.budgets.is_empty()
    }

    pub fn needs_tokens(&self) -> bool {
        self.rates.iter().any(|r| r.limits.tpm.is_some())
    }

    pub fn needs_cost(&self) -> bool {
        !self.budgets.is_empty()
    }

    /// The reservations, rate limits first (in scope order: key, project, tenant), budgets last.
    pub fn reservations(&self, estimate: Estimate) -> Vec<Reservation> {
        let mut out = Vec::with_capacity(self.rates.len() * 3 + self.budgets.len());
        for item in &self.rates {
            rate_reservations(item, estimate.tokens, &mut out);
        }
        for b in &self.budgets {
            out.push(Reservation {
                key: b.key.clone(),
                kind: LimitKind::Calendar { period: b.spec.period },
                limit: b.spec.limit_usd.nanodollars,
                amount: estimate.cost,
                name: format!("{} budget of {}", b.spec.period.as_str(), b.label),
            });
        }
        out
    }
}

/// Requests, tokens and in-flight reservations of one scope.
pub fn rate_reservations(item: &RateItem, tokens: u64, out: &mut Vec<Reservation>) {
    let l = &item.limits;
    if let Some(rpm) = l.rpm {
        out.push(Reservation {
            key: format!("{}:rpm", item.prefix),
            kind: LimitKind::Window { period: MINUTE },
            limit: rpm,
            amount: 1,
            name: format!("requests per minute of {}", item.label),
        });
    }
    if let Some(tpm) = l.tpm {
        out.push(Reservation {
            key: format!("{}:tpm", item.prefix),
            kind: LimitKind::Window { period: MINUTE },
            limit: tpm,
            amount: tokens,
            name: format!("tokens per minute of {}", item.label),
        });
    }
    if let Some(max) = l.max_concurrent {
        out.push(Reservation {
            key: format!("{}:conc", item.prefix),
            kind: LimitKind::Concurrency,
            limit: max,
            amount: 1,
            name: format!("concurrent requests of {}", item.label),
        });
    }
}

/// The limits stored with a key's scopes, as carried by its cached principal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeLimits {
    pub key: LimitPolicy,
    pub project: LimitPolicy,
    pub tenant: LimitPolicy,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_types::limits::Usd;
    use tollgate_types::ports::BudgetPeriod;
    use tollgate_types::tenancy::{KeyId, KeyScope, MemberId, MemberRole, ProjectId, TenantPolicy};
    use uuid::Uuid;

    use super::*;
    use crate::auth::KeyPrincipal;

    fn principal(limits: ScopeLimits) -> Principal {
        Principal::Key(Arc::new(KeyPrincipal {
            key_id: KeyId(Uuid::from_u128(1)),
            tenant_id: TenantId(Uuid::from_u128(2)),
            project_id: ProjectId(Uuid::from_u128(3)),
            owner_id: MemberId(Uuid::from_u128(4)),
            role: MemberRole::Owner,
            scopes: vec![KeyScope::Inference],
            allowed_models: None,
            policy: TenantPolicy::default(),
            expires_at: None,
            revoked_at: None,
            limits,
            pricing: Arc::default(),
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
        let names: Vec<String> =
            plan.reservations(Estimate { tokens: 42, cost: 7 }).into_iter().map(|r| r.name).collect();
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
        assert_eq!(r[2].key, format!("t:{}:m:gpt-4o:tpm", Uuid::from_u128(2)));
        assert_eq!((r[3].limit, r[3].amount), (5_000_000_000, 7));
        assert!(plan.needs_tokens() && plan.needs_cost());

        // Another model: no per-model limit.
        let other = Plan::for_request(&principal(limits), "echo", &defaults);
        assert_eq!(other.rates.len(), 1);
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
