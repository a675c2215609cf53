//! The `limits`, `budgets`, `pricing` and `usage` sections: where rate-limit counters live, the
//! default limits of keys, projects and tenants that set none themselves, budget alerts, price
//! overrides and how long usage records are kept.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use tollgate_types::limits::{LimitPolicy, PriceEntry, RateLimits};

use super::Issues;
use crate::admin::validate;
use crate::env::{EnvSource, interpolate};
use crate::limits::FailurePolicy;
use crate::metering::{Price, PriceTable};

/// `limits:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitsConfig {
    /// `memory` (one node, the default) or `redis` (shared by every node).
    pub backend: Option<String>,
    /// `redis://host:port/db` when the backend is `redis`.
    pub redis_url: Option<String>,
    /// When the Redis backend cannot be reached: `open` admits requests unchecked (default),
    /// `closed` refuses them with 503.
    pub on_backend_failure: Option<String>,
    /// Bound on every Redis call (default 50ms).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The output tokens a request that sets no `max_tokens` is assumed to produce when its
    /// worst-case cost is reserved against a budget (default 4096).
    pub default_max_output_tokens: Option<u64>,
    /// Limits for every key, project and tenant that sets none of its own (field by field).
    #[serde(default)]
    pub defaults: RawLimitDefaults,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitDefaults {
    #[serde(default)]
    pub key: LimitPolicy,
    #[serde(default)]
    pub project: LimitPolicy,
    #[serde(default)]
    pub tenant: LimitPolicy,
}

/// `budgets:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetsConfig {
    /// Percentages of a budget at which an alert is sent (default 50, 80, 100).
    pub alert_at_percent: Option<Vec<u8>>,
    /// Where alerts are POSTed (besides the log).
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key signing the webhook body, normally `${ENV}`.
    pub webhook_secret: Option<String>,
    /// Per delivery attempt (default 5s).
    #[serde(default, with = "humantime_serde")]
    pub webhook_timeout: Option<Duration>,
}

/// `pricing:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricingConfig {
    /// Entries that take precedence over the built-in table (same shape).
    #[serde(default)]
    pub prices: Vec<PriceEntry>,
}

/// `usage:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsageConfig {
    /// Usage records older than this many days are deleted (SQLite) or their monthly partitions
    /// dropped (PostgreSQL). Default: kept forever.
    pub retention_days: Option<u32>,
}

/// Where rate-limit and budget counters live.
#[derive(Debug, Clone)]
pub enum LimiterBackend {
    Memory,
    Redis { url: SecretString },
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub backend: LimiterBackend,
    pub on_backend_failure: FailurePolicy,
    pub timeout: Duration,
    pub default_max_output_tokens: u64,
    pub defaults: LimitDefaults,
}

#[derive(Debug, Clone, Default)]
pub struct LimitDefaults {
    pub key: LimitPolicy,
    pub project: LimitPolicy,
    pub tenant: LimitPolicy,
}

#[derive(Debug, Clone)]
pub struct BudgetsConfig {
    pub alert_at_percent: Vec<u8>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    pub webhook_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub retention_days: Option<u32>,
}

pub const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_millis(50);
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;
pub const DEFAULT_ALERT_PERCENTS: [u8; 3] = [50, 80, 100];

impl RawLimitsConfig {
    pub(super) fn validate(self, env: &dyn EnvSource, issues: &mut Issues) -> LimitsConfig {
        let backend = match self.backend.as_deref().unwrap_or("memory") {
            "memory" => LimiterBackend::Memory,
            "redis" => match super::redis_url("limits", self.redis_url.as_deref(), env, issues) {
                Some(url) => LimiterBackend::Redis { url },
                None => LimiterBackend::Memory,
            },
            other => {
                issues.push("limits.backend", format!("unknown backend {other:?} (known: memory, redis)"));
                LimiterBackend::Memory
            }
        };
        if matches!(backend, LimiterBackend::Memory) && self.redis_url.is_some() && self.backend.is_none() {
            issues.push("limits.redis_url", "is set but limits.backend is not redis");
        }
        let on_backend_failure = match self.on_backend_failure.as_deref().unwrap_or("open") {
            "open" => FailurePolicy::Open,
            "closed" => FailurePolicy::Closed,
            other => {
                issues.push(
                    "limits.on_backend_failure",
                    format!("unknown policy {other:?} (known: open, closed)"),
                );
                FailurePolicy::Open
            }
        };
        let timeout = self.timeout.unwrap_or(DEFAULT_LIMITER_TIMEOUT);
        if timeout.is_zero() {
            issues.push("limits.timeout", "must be greater than 0");
        }
        let default_max_output_tokens = self.default_max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
        if default_max_output_tokens == 0 {
            issues.push("limits.default_max_output_tokens", "must be greater than 0");
        }
        let defaults = LimitDefaults {
            key: check_policy("limits.defaults.key", self.defaults.key, issues),
            project: check_policy("limits.defaults.project", self.defaults.project, issues),
            tenant: check_policy("limits.defaults.tenant", self.defaults.tenant, issues),
        };
        LimitsConfig { backend, on_backend_failure, timeout, default_max_output_tokens, defaults }
    }
}

impl RawBudgetsConfig {
    pub(super) fn validate(self, env: &dyn EnvSource, issues: &mut Issues) -> BudgetsConfig {
        let mut alert_at_percent = self.alert_at_percent.unwrap_or_else(|| DEFAULT_ALERT_PERCENTS.to_vec());
        if alert_at_percent.iter().any(|p| !(1..=100).contains(p)) {
            issues.push("budgets.alert_at_percent", "each value must be between 1 and 100");
        }
        alert_at_percent.sort_unstable();
        alert_at_percent.dedup();
        let mut text = |field: &str, v: Option<String>| match v.map(|s| interpolate(&s, env)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                issues.push(format!("budgets.{field}"), super::describe(e));
                None
            }
        };
        let webhook_url = text("webhook_url", self.webhook_url);
        let webhook_secret = text("webhook_secret", self.webhook_secret).map(SecretString::from);
        if let Some(url) = &webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            issues.push("budgets.webhook_url", format!("{url:?} must start with http:// or https://"));
        }
        let webhook_timeout = self.webhook_timeout.unwrap_or(Duration::from_secs(5));
        if webhook_timeout.is_zero() {
            issues.push("budgets.webhook_timeout", "must be greater than 0");
        }
        BudgetsConfig { alert_at_percent, webhook_url, webhook_secret, webhook_timeout }
    }
}

impl RawPricingConfig {
    /// The built-in table with the file's entries on top.
    pub(super) fn validate(self, issues: &mut Issues) -> PriceTable {
        let builtin = match PriceTable::builtin() {
            Ok(t) => t,
            Err(errors) => {
                for e in errors {
                    issues.push("pricing (built-in table)", e.to_string());
                }
                PriceTable::default()
            }
        };
        let mut overrides = Vec::with_capacity(self.prices.len());
        for (i, entry) in self.prices.iter().enumerate() {
            match Price::from_entry(entry) {
                Ok(p) => overrides.push(p),
                Err(e) => issues.push(format!("pricing.prices[{i}]"), e.to_string()),
            }
        }
        if overrides.is_empty() { builtin } else { builtin.with_overrides(overrides) }
    }
}

impl RawUsageConfig {
    pub(super) fn validate(self, issues: &mut Issues) -> UsageConfig {
        if self.retention_days == Some(0) {
            issues.push("usage.retention_days", "must be at least 1 (remove it to keep records forever)");
        }
        UsageConfig { retention_days: self.retention_days }
    }
}

/// The admin API's check of a limit policy, reported as a config issue at `path` (one problem
/// at a time, like the API).
pub(super) fn check_policy(path: &str, policy: LimitPolicy, issues: &mut Issues) -> LimitPolicy {
    match validate::limits(path, policy) {
        Ok(p) => p,
        Err(e) => {
            issues.push(e.param.unwrap_or_else(|| path.to_owned()), e.message);
            LimitPolicy::default()
        }
    }
}

/// The admin API's check of rate limits, reported as a config issue.
pub(super) fn check_rates(path: &str, rates: &RateLimits, issues: &mut Issues) {
    if let Err(e) = validate::rate(path, rates) {
        issues.push(e.param.unwrap_or_else(|| path.to_owned()), e.message);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tollgate_types::limits::{BudgetSpec, Usd};
    use tollgate_types::ports::BudgetPeriod;

    use super::*;

    #[test]
    fn default_policies_are_checked_like_the_admin_api_and_name_the_field() {
        let env = HashMap::new();
        let mut issues = Issues(Vec::new());
        let mut raw = RawLimitsConfig::default();
        raw.defaults.key.rate.rpm = Some(0);
        let budget =
            BudgetSpec { period: BudgetPeriod::Day, limit_usd: Usd::default(), alert_at_percent: None };
        raw.defaults.tenant.budgets = vec![budget];
        raw.validate(&env, &mut issues);
        let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["limits.defaults.key.rate.rpm", "limits.defaults.tenant.budgets[0].limit_usd"]);
    }

    #[test]
    fn redis_backend_needs_a_url_and_bad_values_are_reported() {
        let env = HashMap::new();
        let mut issues = Issues(Vec::new());
        let raw = RawLimitsConfig {
            backend: Some("redis".into()),
            on_backend_failure: Some("sideways".into()),
            ..RawLimitsConfig::default()
        };
        raw.validate(&env, &mut issues);
        let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["limits.redis_url", "limits.on_backend_failure"]);
    }
}
