//! The `routing` section (defaults for every alias: retries, circuit breakers, latency tracking,
//! active health checks) and the per-alias `routing` block (strategy, fallbacks, attempt budget,
//! deadline, hedging), plus the routing fields of a deployment (weight, priority, tags).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::Issues;
use crate::routing::{Backoff, BreakerConfig, HealthConfig, Strategy};

/// Most attempts one request may make, across deployments and fallback aliases.
pub const MAX_ATTEMPTS_CAP: u32 = 10;
/// Most tags a deployment may carry.
const MAX_TAGS: usize = 32;

/// `routing:` at the top of the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutingDefaults {
    /// Attempts per request across deployments and fallbacks (default 3).
    pub max_attempts: Option<u32>,
    /// Backoff before trying a deployment again (full jitter).
    #[serde(default, with = "humantime_serde")]
    pub backoff_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    /// Bound on a whole request, every attempt and backoff included (default: none beyond each
    /// deployment's own timeouts).
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    #[serde(default)]
    pub breaker: RawBreaker,
    /// Weight of the newest sample in the latency averages (default 0.3).
    pub ewma_alpha: Option<f64>,
    /// A latency average older than this decays so a once-slow deployment is tried again
    /// (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub latency_stale_after: Option<Duration>,
    /// Share of requests the latency strategy sends to a random deployment (default 0.01: each
    /// explored request to a slow deployment is a slow answer, so keep it small).
    pub explore_rate: Option<f64>,
    /// Active health checks: a tiny request to every deployment at this interval (default off).
    #[serde(default, with = "humantime_serde")]
    pub health_check_interval: Option<Duration>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Opens when this share of the window's calls failed (default 0.5)...
    pub failure_rate: Option<f64>,
    /// ...once the window holds at least this many calls (default 10).
    pub min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Also opens after this many failures in a row (default 5).
    pub consecutive_failures: Option<u32>,
    /// How long it stays open before probing (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    /// Requests let through at once while half-open (default 1).
    pub half_open_probes: Option<u32>,
}

/// `models.<alias>.routing:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliasRouting {
    /// `ordered` (default), `weighted`, `least_busy`, `latency`, `cost` or `usage`.
    pub strategy: Option<Strategy>,
    /// Aliases tried, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Alias for prompts too long for this alias's deployments.
    pub context_window_fallback: Option<String>,
    /// Alias for requests this alias's upstream refused on content policy.
    pub content_policy_fallback: Option<String>,
    /// Overrides `routing.max_attempts` for this alias.
    pub max_attempts: Option<u32>,
    /// Overrides `routing.deadline` for this alias.
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// Hedging: when the first deployment has sent nothing after this long, the same request
    /// starts on the next one and the first answer wins (default off).
    #[serde(default, with = "humantime_serde")]
    pub hedge_after: Option<Duration>,
}

/// The routing fields of `models.<alias>.deployments[i]` (they sit in the deployment's own
/// mapping, see `RawDeploymentConfig`).
#[derive(Debug, Default, Clone)]
pub struct RawDeploymentRouting {
    /// Share of traffic under `weighted` (default 1; 0 = only when the others fail).
    pub weight: Option<u32>,
    /// Lower is tried first, whatever the strategy (default 0).
    pub priority: Option<i32>,
    /// Labels requests and tenants can be pinned to (`eu`, `fast`, ...).
    pub tags: Vec<String>,
    /// Where the deployment runs; matched like a tag.
    pub region: Option<String>,
    /// Largest prompt plus output the upstream model accepts, in tokens; longer requests skip
    /// this deployment (default: unknown, the upstream's own error decides).
    pub context_window: Option<u64>,
}

// === validated ===

/// Routing defaults shared by every alias.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub deadline: Option<Duration>,
    pub health: HealthConfig,
    pub health_check_interval: Option<Duration>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RawRoutingDefaults::default().validate(&mut Issues(Vec::new()))
    }
}

/// One alias's routing.
#[derive(Debug, Clone, Default)]
pub struct AliasRouting {
    pub strategy: Strategy,
    pub fallbacks: Vec<String>,
    pub context_window_fallback: Option<String>,
    pub content_policy_fallback: Option<String>,
    pub max_attempts: Option<u32>,
    pub deadline: Option<Duration>,
    pub hedge_after: Option<Duration>,
}

/// One deployment's routing fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRouting {
    pub weight: u32,
    pub priority: i32,
    /// Tags and the region, deduplicated.
    pub tags: BTreeSet<String>,
    pub region: Option<String>,
    pub context_window: Option<u64>,
}

impl Default for DeploymentRouting {
    fn default() -> Self {
        Self { weight: 1, priority: 0, tags: BTreeSet::new(), region: None, context_window: None }
    }
}

impl RawRoutingDefaults {
    pub(super) fn validate(self, issues: &mut Issues) -> RoutingConfig {
        let health_default = HealthConfig::default();
        let b = self.breaker;
        let bd = BreakerConfig::default();
        let breaker = BreakerConfig {
            failure_rate: b.failure_rate.unwrap_or(bd.failure_rate),
            min_requests: b.min_requests.unwrap_or(bd.min_requests),
            window: b.window.unwrap_or(bd.window),
            consecutive_failures: b.consecutive_failures.unwrap_or(bd.consecutive_failures),
            cooldown: b.cooldown.unwrap_or(bd.cooldown),
            half_open_probes: b.half_open_probes.unwrap_or(bd.half_open_probes),
        };
        if !(breaker.failure_rate > 0.0 && breaker.failure_rate <= 1.0) {
            issues.push("routing.breaker.failure_rate", "must be in (0, 1]");
        }
        for (field, v) in [
            ("min_requests", breaker.min_requests),
            ("consecutive_failures", breaker.consecutive_failures),
            ("half_open_probes", breaker.half_open_probes),
        ] {
            if v == 0 {
                issues.push(format!("routing.breaker.{field}"), "must be greater than 0");
            }
        }
        for (field, v) in [("window", breaker.window), ("cooldown", breaker.cooldown)] {
            if v.is_zero() {
                issues.push(format!("routing.breaker.{field}"), "must be greater than 0");
            }
        }
        let health = HealthConfig {
            breaker,
            ewma_alpha: self.ewma_alpha.unwrap_or(health_default.ewma_alpha),
            stale_after: self.latency_stale_after.unwrap_or(health_default.stale_after),
            explore_rate: self.explore_rate.unwrap_or(health_default.explore_rate),
        };
        if !(health.ewma_alpha > 0.0 && health.ewma_alpha <= 1.0) {
            issues.push("routing.ewma_alpha", "must be in (0, 1]");
        }
        if !(0.0..=0.5).contains(&health.explore_rate) {
            issues.push("routing.explore_rate", "must be between 0 and 0.5");
        }
        if health.stale_after.is_zero() {
            issues.push("routing.latency_stale_after", "must be greater than 0");
        }
        let max_attempts = self.max_attempts.unwrap_or(3);
        check_attempts("routing.max_attempts", max_attempts, issues);
        let bo = Backoff::default();
        let backoff =
            Backoff { base: self.backoff_base.unwrap_or(bo.base), max: self.backoff_max.unwrap_or(bo.max) };
        if backoff.base > backoff.max {
            issues.push("routing.backoff_base", "must not exceed routing.backoff_max");
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            issues.push("routing.deadline", "must be greater than 0");
        }
        if self.health_check_interval.is_some_and(|d| d < Duration::from_secs(1)) {
            issues.push("routing.health_check_interval", "must be at least 1s");
        }
        RoutingConfig {
            max_attempts,
            backoff,
            deadline: self.deadline,
            health,
            health_check_interval: self.health_check_interval,
        }
    }
}

fn check_attempts(path: &str, n: u32, issues: &mut Issues) {
    if n == 0 || n > MAX_ATTEMPTS_CAP {
        issues.push(path, format!("must be between 1 and {MAX_ATTEMPTS_CAP}"));
    }
}

impl RawAliasRouting {
    /// `aliases` are every configured alias (fallbacks must name one of them, not `alias`).
    pub(super) fn validate(
        self,
        alias: &str,
        aliases: &BTreeSet<String>,
        issues: &mut Issues,
    ) -> AliasRouting {
        let path = format!("models.{alias}.routing");
        let mut check_alias = |field: &str, target: &str| {
            if target == alias {
                issues.push(format!("{path}.{field}"), "must name another alias, not this one");
            } else if !aliases.contains(target) {
                issues.push(format!("{path}.{field}"), format!("unknown alias {target:?}"));
            }
        };
        for (i, f) in self.fallbacks.iter().enumerate() {
            check_alias(&format!("fallbacks[{i}]"), f);
        }
        if let Some(f) = &self.context_window_fallback {
            check_alias("context_window_fallback", f);
        }
        if let Some(f) = &self.content_policy_fallback {
            check_alias("content_policy_fallback", f);
        }
        if let Some(n) = self.max_attempts {
            check_attempts(&format!("{path}.max_attempts"), n, issues);
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            issues.push(format!("{path}.deadline"), "must be greater than 0");
        }
        if self.hedge_after.is_some_and(|d| d.is_zero()) {
            issues.push(format!("{path}.hedge_after"), "must be greater than 0");
        }
        AliasRouting {
            strategy: self.strategy.unwrap_or_default(),
            fallbacks: self.fallbacks,
            context_window_fallback: self.context_window_fallback,
            content_policy_fallback: self.content_policy_fallback,
            max_attempts: self.max_attempts,
            deadline: self.deadline,
            hedge_after: self.hedge_after,
        }
    }
}

impl RawDeploymentRouting {
    pub(super) fn validate(self, path: &str, issues: &mut Issues) -> DeploymentRouting {
        let weight = self.weight.unwrap_or(1);
        if weight > 1_000_000 {
            issues.push(format!("{path}.weight"), "must be at most 1000000");
        }
        if self.tags.len() > MAX_TAGS {
            issues.push(format!("{path}.tags"), format!("at most {MAX_TAGS} tags"));
        }
        let mut tags = BTreeSet::new();
        for (i, t) in self.tags.iter().chain(&self.region).enumerate() {
            if !valid_tag(t) {
                let field = if i < self.tags.len() { format!("tags[{i}]") } else { "region".to_owned() };
                issues.push(
                    format!("{path}.{field}"),
                    format!("{t:?}: use 1-64 letters, digits, '-', '_', '.' or ':'"),
                );
            }
            tags.insert(t.clone());
        }
        if self.context_window == Some(0) {
            issues.push(format!("{path}.context_window"), "must be greater than 0");
        }
        DeploymentRouting {
            weight,
            priority: self.priority.unwrap_or(0),
            tags,
            region: self.region,
            context_window: self.context_window,
        }
    }
}

/// Tags travel in request headers and admin payloads: keep them to a safe alphabet.
pub fn valid_tag(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
