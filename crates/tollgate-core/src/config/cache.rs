//! The `cache:` section (where answers are kept, how big, how long, and the default rule of
//! every request) and the `cache:` of one model alias. See `docs/caching.md`.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use tollgate_types::cache_rule::{CacheAllow, CacheRule, CacheRuleMode};

use super::Issues;
use super::semantic_cache::{RawSemanticConfig, SemanticConfig};
use crate::env::EnvSource;

/// `cache:` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheConfig {
    /// `memory` (one node, the default) or `redis` (shared by every node).
    pub backend: Option<String>,
    /// `redis://host:port/db` when the backend is `redis`.
    pub redis_url: Option<String>,
    /// In-process backend: the most bytes of stored answers kept (default 256 MiB); the least
    /// recently used are evicted past it.
    pub max_bytes: Option<u64>,
    /// Redis backend: bound on every call (default 100ms); a slower answer is a miss.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The longest any answer is kept, whatever a rule or a request asks (default 1 day).
    #[serde(default, with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
    /// The rule of every request (under the alias's, tenant's, project's and key's): `on`,
    /// `off` (default), `read-only` or `write-only` for requests without an `x-tollgate-cache`
    /// header.
    pub mode: Option<CacheRuleMode>,
    /// `read-write` (default), `read-only` or `none`: the most any request may do.
    pub allow: Option<CacheAllow>,
    /// How long stored answers live when no rule says (default 1 hour).
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// The semantic cache (answers matched by meaning); absent: exact matches only.
    pub semantic: Option<RawSemanticConfig>,
}

/// A model alias's cache rule as the file writes it (a `ttl` duration rather than seconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    /// `on`, `off`, `read-only` or `write-only`: what requests without an `x-tollgate-cache`
    /// header do.
    pub mode: Option<CacheRuleMode>,
    /// `read-write`, `read-only` or `none`: the most requests may do.
    pub allow: Option<CacheAllow>,
    /// How long stored answers live.
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Whether requests that miss the exact cache are also matched by meaning.
    pub semantic: Option<bool>,
}

/// Where cached answers live.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    Memory { max_bytes: u64 },
    Redis { url: SecretString, timeout: Duration },
}

/// The validated `cache:` section.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    /// The file's rule: the least specific level.
    pub rule: CacheRule,
    /// The TTL when no rule sets one.
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// The semantic cache, when configured.
    pub semantic: Option<SemanticConfig>,
}

pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(100);
/// The stores cap TTLs at a year; a longer `max_ttl` would promise what they do not keep.
const MAX_TTL_CEILING: Duration = Duration::from_secs(365 * 86_400);

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            backend: CacheBackend::Memory { max_bytes: DEFAULT_CACHE_MAX_BYTES },
            rule: CacheRule::default(),
            default_ttl: DEFAULT_CACHE_TTL,
            max_ttl: DEFAULT_CACHE_MAX_TTL,
            semantic: None,
        }
    }
}

impl RawCacheConfig {
    pub(super) fn validate(self, env: &dyn EnvSource, issues: &mut Issues) -> CacheConfig {
        let backend = match self.backend.as_deref().unwrap_or("memory") {
            "memory" => {
                if self.redis_url.is_some() {
                    issues.push("cache.redis_url", "is set but cache.backend is not redis");
                }
                let max_bytes = self.max_bytes.unwrap_or(DEFAULT_CACHE_MAX_BYTES);
                if max_bytes == 0 {
                    issues.push(
                        "cache.max_bytes",
                        "must be greater than 0 (use mode: off to turn caching off)",
                    );
                }
                CacheBackend::Memory { max_bytes }
            }
            "redis" => {
                if self.max_bytes.is_some() {
                    issues.push(
                        "cache.max_bytes",
                        "applies to the memory backend only; bound Redis with its maxmemory setting",
                    );
                }
                let timeout = self.timeout.unwrap_or(DEFAULT_CACHE_TIMEOUT);
                if timeout.is_zero() {
                    issues.push("cache.timeout", "must be greater than 0");
                }
                match super::redis_url("cache", self.redis_url.as_deref(), env, issues) {
                    Some(url) => CacheBackend::Redis { url, timeout },
                    None => CacheBackend::Memory { max_bytes: DEFAULT_CACHE_MAX_BYTES },
                }
            }
            other => {
                issues.push("cache.backend", format!("unknown backend {other:?} (known: memory, redis)"));
                CacheBackend::Memory { max_bytes: DEFAULT_CACHE_MAX_BYTES }
            }
        };
        let max_ttl = self.max_ttl.unwrap_or(DEFAULT_CACHE_MAX_TTL);
        if max_ttl < Duration::from_secs(1) || max_ttl > MAX_TTL_CEILING {
            issues.push("cache.max_ttl", "must be from 1s to 365d");
        }
        let semantic = self.semantic.and_then(|s| s.validate(issues));
        let rule = RawCacheRule {
            mode: self.mode,
            allow: self.allow,
            ttl: self.ttl,
            semantic: semantic.as_ref().map(|s| s.enabled),
        }
        .validate("cache", issues);
        CacheConfig { backend, rule, default_ttl: DEFAULT_CACHE_TTL.min(max_ttl), max_ttl, semantic }
    }
}

impl RawCacheRule {
    /// The rule, its TTL in whole seconds; `path` is where it sits in the file.
    pub(super) fn validate(self, path: &str, issues: &mut Issues) -> CacheRule {
        let ttl_seconds = self.ttl.map(|ttl| {
            if ttl < Duration::from_secs(1) || ttl > MAX_TTL_CEILING {
                issues.push(format!("{path}.ttl"), "must be from 1s to 365d");
            }
            ttl.as_secs()
        });
        CacheRule { mode: self.mode, allow: self.allow, ttl_seconds, semantic: self.semantic }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::Config;

    use super::*;

    const MODELS: &str =
        "providers: {echo: {kind: echo}}\nmodels: {echo: {deployments: [{provider: echo, model: e}]}}\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{MODELS}{extra}"), &HashMap::new()).map(|(c, _)| c).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_an_in_process_cache_turned_off() {
        let c = parse("").unwrap().cache;
        assert!(matches!(c.backend, CacheBackend::Memory { max_bytes: DEFAULT_CACHE_MAX_BYTES }));
        assert_eq!(c.rule, CacheRule::default());
        assert_eq!((c.default_ttl, c.max_ttl), (DEFAULT_CACHE_TTL, DEFAULT_CACHE_MAX_TTL));
    }

    #[test]
    fn reads_every_field() {
        let c = parse("cache: {backend: redis, redis_url: 'redis://127.0.0.1:6379', timeout: 50ms, max_ttl: 2h, mode: on, allow: read-only, ttl: 10m}")
            .unwrap()
            .cache;
        assert!(
            matches!(c.backend, CacheBackend::Redis { timeout, .. } if timeout == Duration::from_millis(50))
        );
        assert_eq!(
            c.rule,
            CacheRule {
                mode: Some(CacheRuleMode::On),
                allow: Some(CacheAllow::ReadOnly),
                ttl_seconds: Some(600),
                semantic: None,
            }
        );
        assert_eq!(c.max_ttl, Duration::from_secs(7200));
    }

    #[test]
    fn reports_bad_values_with_their_path() {
        for (yaml, want) in [
            ("cache: {backend: disk}", "cache.backend: unknown backend \"disk\""),
            ("cache: {backend: redis}", "cache.redis_url: is required"),
            ("cache: {backend: redis, redis_url: 'http://x'}", "cache.redis_url: must start with redis://"),
            ("cache: {redis_url: 'redis://x'}", "cache.redis_url: is set but cache.backend is not redis"),
            ("cache: {max_bytes: 0}", "cache.max_bytes: must be greater than 0"),
            ("cache: {ttl: 0s}", "cache.ttl: must be from 1s"),
            ("cache: {max_ttl: 400d}", "cache.max_ttl: must be from 1s"),
            ("cache: {mode: sometimes}", "unknown variant `sometimes`"),
            ("cache: {size: 5}", "unknown field `size`"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
