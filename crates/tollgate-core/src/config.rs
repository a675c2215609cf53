//! The configuration file: `Raw*` types (exactly what the YAML says, `deny_unknown_fields`) and
//! the validated [`Config`] built from them. [`Config::parse`] reports every problem at once,
//! each with its path (`models.claude.deployments[0].provider: unknown provider "antropic"`).
//!
//! Secrets are `${ENV}` references resolved at load; a provider whose key variable is unset is
//! kept but disabled (its calls answer an error naming the variable), so the default config
//! starts on a machine with no keys at all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tollgate_providers::{Credential, ProviderKind};

use crate::env::{EnvSource, InterpolationError, interpolate};
use crate::metering::PriceTable;

mod cache;
mod limits;
mod routing;
mod semantic_cache;

pub use cache::{CacheBackend, CacheConfig, RawCacheConfig, RawCacheRule};
pub use semantic_cache::{
    EmbeddingSource, LocalEmbedding, RawSemanticConfig, SemanticBackend, SemanticConfig,
};

pub use routing::{AliasRouting, DeploymentRouting, RoutingConfig, valid_tag};

pub use limits::{
    BudgetsConfig, LimitDefaults, LimiterBackend, LimitsConfig, RawBudgetsConfig, RawLimitsConfig,
    RawPricingConfig, RawUsageConfig, UsageConfig,
};

// === raw (file) types ===

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on. The `--listen` flag overrides it.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTP server limits.
    #[serde(default)]
    pub server: RawServerConfig,
    /// Where tenants, keys and credentials live.
    #[serde(default)]
    pub store: RawStoreConfig,
    /// Upstream providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, RawProviderConfig>,
    /// Model aliases clients call, each served by one or more deployments.
    #[serde(default)]
    pub models: BTreeMap<String, RawModelConfig>,
    /// Rate-limit backend and default limits.
    #[serde(default)]
    pub limits: RawLimitsConfig,
    /// Budget alerts.
    #[serde(default)]
    pub budgets: RawBudgetsConfig,
    /// Price overrides.
    #[serde(default)]
    pub pricing: RawPricingConfig,
    /// Usage-record retention.
    #[serde(default)]
    pub usage: RawUsageConfig,
    /// Retries, circuit breakers and latency tracking for every alias.
    #[serde(default)]
    pub routing: routing::RawRoutingDefaults,
    /// The response cache: backend, size, TTLs and the default rule.
    #[serde(default)]
    pub cache: RawCacheConfig,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerConfig {
    /// Largest accepted request body, in bytes (default 10 MiB). Larger bodies get 413.
    pub max_body_bytes: Option<usize>,
    /// Requests handled at once before new ones are shed with 503 (default 10000).
    pub max_concurrency: Option<usize>,
    /// How long a graceful shutdown waits for in-flight requests (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreConfig {
    /// `sqlite://path/to/file.db` (a path relative to the config file) or
    /// `postgres://tollgate_app@host/db`. Default: `tollgate.db` next to the config file.
    pub url: Option<String>,
    /// PostgreSQL only: the URL of the role that owns the tables, used to run migrations
    /// (default: `url`).
    pub owner_url: Option<String>,
    /// Run the embedded migrations at start-up (default true).
    pub migrate: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderConfig {
    /// `openai`, `azure`, `openai_compatible`, `anthropic`, `gemini`, `cohere` or `echo`.
    pub kind: String,
    /// API key, normally `${SOME_ENV_VAR}`.
    pub api_key: Option<String>,
    /// API base URL; defaults to the provider's public endpoint (required for `azure` and
    /// `openai_compatible`).
    pub base_url: Option<String>,
    /// Azure `api-version`, Anthropic `anthropic-version`.
    pub api_version: Option<String>,
    /// Extra headers sent with every upstream call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Default timeouts of this provider's deployments.
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP + TLS connect (default 5s).
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    /// Until the upstream's response headers; for non-streaming calls, the whole answer
    /// (default 120s).
    #[serde(default, with = "humantime_serde")]
    pub first_byte: Option<Duration>,
    /// The whole call, stream included (default 600s).
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelConfig {
    /// Shown in `GET /v1/models`.
    pub description: Option<String>,
    /// The deployments serving the alias, ordered by its routing strategy.
    pub deployments: Vec<RawDeploymentConfig>,
    /// Strategy, fallbacks, attempts, deadline and hedging of this alias.
    #[serde(default)]
    pub routing: routing::RawAliasRouting,
    /// The response cache for this alias (over the file's `cache:` rule, under tenants').
    #[serde(default)]
    pub cache: RawCacheRule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploymentConfig {
    /// Name of an entry of `providers`.
    pub provider: String,
    /// The model name the upstream knows (for Azure: the deployment name).
    pub model: String,
    /// Name in headers, metrics and logs (default `<provider>/<model>`).
    pub name: Option<String>,
    /// Overrides of the provider's timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// This deployment's own limits (its provider account's quota), shared by every tenant.
    #[serde(default)]
    pub limits: tollgate_types::limits::RateLimits,
    /// Share of traffic under the `weighted` strategy (default 1).
    pub weight: Option<u32>,
    /// Lower is tried first, whatever the strategy (default 0).
    pub priority: Option<i32>,
    /// Labels requests, keys and tenants can be pinned to.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where the deployment runs; matched like a tag.
    pub region: Option<String>,
    /// Largest request (prompt + output) the upstream model takes, in tokens.
    pub context_window: Option<u64>,
}

// === validated types ===

pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENCY: usize = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(600);

/// The validated configuration, shared as `Arc<Config>`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    pub limits: LimitsConfig,
    pub budgets: BudgetsConfig,
    /// The built-in prices with the file's overrides on top.
    pub prices: PriceTable,
    pub usage: UsageConfig,
    pub routing: RoutingConfig,
    pub cache: CacheConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    pub shutdown_grace: Duration,
}

/// Where the store lives. Secrets in URLs stay in `SecretString`s.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `None`: the default SQLite file next to the config file (the binary resolves it).
    pub url: Option<SecretString>,
    pub owner_url: Option<SecretString>,
    pub migrate: bool,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub credential: Credential,
    pub base_url: String,
    pub api_version: Option<String>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub description: Option<String>,
    pub deployments: Vec<DeploymentConfig>,
    pub routing: AliasRouting,
    pub cache: tollgate_types::cache_rule::CacheRule,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub timeouts: Timeouts,
    pub limits: tollgate_types::limits::RateLimits,
    pub routing: DeploymentRouting,
}

// === errors ===

/// One problem in the file, at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// Something worth telling the operator at start-up that does not stop the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub message: String,
}

// === parsing and validation ===

impl Config {
    /// Parses and validates a YAML document. Returns the config and the warnings (disabled
    /// providers), or every problem found.
    pub fn parse(yaml: &str, env: &dyn EnvSource) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let de = yaml_serde::Deserializer::from_str(yaml);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError { issues: vec![ConfigIssue { path, message: e.into_inner().to_string() }] }
        })?;
        raw.validate(env)
    }

    /// A small config with one `echo` model, for tests.
    #[cfg(any(test, feature = "test-util"))]
    pub fn for_tests() -> Config {
        let yaml = "providers: {echo: {kind: echo}}\nmodels: {echo: {deployments: [{provider: echo, model: echo-1}]}}";
        match Config::parse(yaml, &std::collections::HashMap::new()) {
            Ok((c, _)) => c,
            Err(e) => unreachable!("the built-in test config is valid: {e}"),
        }
    }
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue { path: path.into(), message: message.into() });
    }
}

impl RawConfig {
    pub fn validate(self, env: &dyn EnvSource) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut issues = Issues(Vec::new());
        let mut warnings = Vec::new();

        let listen = match interpolate(&self.listen, env).map_err(describe) {
            Ok(s) => s.parse().map_err(|_| format!("{s:?} is not an address like 127.0.0.1:8080")),
            Err(e) => Err(e),
        };
        let listen = listen.unwrap_or_else(|m| {
            issues.push("listen", m);
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });

        let server = ServerConfig {
            max_body_bytes: self.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_concurrency: self.server.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            shutdown_grace: self.server.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        };
        if server.max_body_bytes == 0 {
            issues.push("server.max_body_bytes", "must be greater than 0");
        }
        if server.max_concurrency == 0 {
            issues.push("server.max_concurrency", "must be greater than 0");
        }

        let mut store_url = |field: &str, v: Option<String>| match v.map(|u| interpolate(&u, env)) {
            None => None,
            Some(Ok(u))
                if u.starts_with("postgres://")
                    || u.starts_with("postgresql://")
                    || u.starts_with("sqlite:") =>
            {
                Some(SecretString::from(u))
            }
            Some(Ok(_)) => {
                issues
                    .push(format!("store.{field}"), "must start with sqlite:, postgres:// or postgresql://");
                None
            }
            Some(Err(e)) => {
                issues.push(format!("store.{field}"), describe(e));
                None
            }
        };
        let store = StoreConfig {
            url: store_url("url", self.store.url),
            owner_url: store_url("owner_url", self.store.owner_url),
            migrate: self.store.migrate.unwrap_or(true),
        };

        let mut providers = BTreeMap::new();
        for (name, raw) in self.providers {
            if let Some(p) = validate_provider(&name, raw, env, &mut issues, &mut warnings) {
                providers.insert(name, p);
            }
        }

        let aliases: std::collections::BTreeSet<String> = self.models.keys().cloned().collect();
        let mut models = BTreeMap::new();
        for (alias, raw) in self.models {
            let path = format!("models.{alias}");
            if raw.deployments.is_empty() {
                issues.push(format!("{path}.deployments"), "needs at least one deployment");
            }
            let mut deployments = Vec::with_capacity(raw.deployments.len());
            for (i, d) in raw.deployments.into_iter().enumerate() {
                let dpath = format!("{path}.deployments[{i}]");
                let Some(provider) = providers.get(&d.provider) else {
                    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                    issues.push(
                        format!("{dpath}.provider"),
                        format!("unknown provider {:?} (configured: {})", d.provider, known.join(", ")),
                    );
                    continue;
                };
                if d.model.trim().is_empty() {
                    issues.push(format!("{dpath}.model"), "must not be empty");
                }
                let t = |o: Option<Duration>, p: Option<Duration>, dflt| o.or(p).unwrap_or(dflt);
                let timeouts = Timeouts {
                    connect: t(d.timeouts.connect, provider.timeouts.connect, DEFAULT_CONNECT_TIMEOUT),
                    first_byte: t(
                        d.timeouts.first_byte,
                        provider.timeouts.first_byte,
                        DEFAULT_FIRST_BYTE_TIMEOUT,
                    ),
                    total: t(d.timeouts.total, provider.timeouts.total, DEFAULT_TOTAL_TIMEOUT),
                };
                for (field, value) in [
                    ("connect", timeouts.connect),
                    ("first_byte", timeouts.first_byte),
                    ("total", timeouts.total),
                ] {
                    if value.is_zero() {
                        issues.push(format!("{dpath}.timeouts.{field}"), "must be greater than 0");
                    }
                }
                limits::check_rates(&format!("{dpath}.limits"), &d.limits, &mut issues);
                let routing = routing::RawDeploymentRouting {
                    weight: d.weight,
                    priority: d.priority,
                    tags: d.tags,
                    region: d.region,
                    context_window: d.context_window,
                }
                .validate(&dpath, &mut issues);
                let name = d.name.unwrap_or_else(|| format!("{}/{}", d.provider, d.model));
                deployments.push(DeploymentConfig {
                    name,
                    provider: d.provider,
                    model: d.model,
                    timeouts,
                    limits: d.limits,
                    routing,
                });
            }
            let routing = raw.routing.validate(&alias, &aliases, &mut issues);
            let cache = raw.cache.validate(&format!("{path}.cache"), &mut issues);
            models.insert(alias, ModelConfig { description: raw.description, deployments, routing, cache });
        }

        let limits = self.limits.validate(env, &mut issues);
        let budgets = self.budgets.validate(env, &mut issues);
        let prices = self.pricing.validate(&mut issues);
        let usage = self.usage.validate(&mut issues);
        let routing = self.routing.validate(&mut issues);
        let cache = self.cache.validate(env, &mut issues);
        if let Some(semantic) = &cache.semantic {
            if let EmbeddingSource::Alias(alias) = &semantic.embedding
                && !models.contains_key(alias)
            {
                issues.push("cache.semantic.embedding.alias", format!("names no model alias: {alias:?}"));
            }
            let on_postgres = store.url.as_ref().is_some_and(|u| !u.expose_secret().starts_with("sqlite:"));
            if semantic.backend == SemanticBackend::Postgres && !on_postgres {
                issues.push("cache.semantic.backend", "postgres needs store.url to be a PostgreSQL URL");
            }
        }

        if issues.0.is_empty() {
            Ok((
                Config {
                    listen,
                    server,
                    store,
                    providers,
                    models,
                    limits,
                    budgets,
                    prices,
                    usage,
                    routing,
                    cache,
                },
                warnings,
            ))
        } else {
            Err(ConfigError { issues: issues.0 })
        }
    }
}

/// `<section>.redis_url` of a section whose backend is `redis`: required, `${ENV}` resolved,
/// `redis://` or `rediss://`. `None` (an issue recorded) otherwise.
fn redis_url(
    section: &str,
    value: Option<&str>,
    env: &dyn EnvSource,
    issues: &mut Issues,
) -> Option<SecretString> {
    let path = format!("{section}.redis_url");
    match value.map(|u| interpolate(u, env)) {
        Some(Ok(url)) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Some(SecretString::from(url))
        }
        Some(Ok(_)) => {
            issues.push(path, "must start with redis:// or rediss://");
            None
        }
        Some(Err(e)) => {
            issues.push(path, describe(e));
            None
        }
        None => {
            issues.push(path, format!("is required when {section}.backend is redis"));
            None
        }
    }
}

fn describe(e: InterpolationError) -> String {
    match e {
        InterpolationError::Missing(v) => format!("environment variable {v} is not set"),
        InterpolationError::Syntax(m) => m,
    }
}

fn validate_provider(
    name: &str,
    raw: RawProviderConfig,
    env: &dyn EnvSource,
    issues: &mut Issues,
    warnings: &mut Vec<ConfigWarning>,
) -> Option<ProviderConfig> {
    let path = format!("providers.{name}");
    let Some(kind) = ProviderKind::ALL.into_iter().find(|k| k.as_str() == raw.kind) else {
        let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        issues.push(
            format!("{path}.kind"),
            format!("unknown provider kind {:?} (known: {})", raw.kind, known.join(", ")),
        );
        return None;
    };
    let credential = match raw.api_key.as_deref().map(|k| interpolate(k, env)) {
        None if kind.requires_key() => {
            issues.push(
                format!("{path}.api_key"),
                format!("is required for kind {kind} (e.g. api_key: ${{{}}})", suggested_var(kind)),
            );
            Credential::None
        }
        None => Credential::None,
        Some(Ok(key)) => Credential::Key(SecretString::from(key)),
        Some(Err(InterpolationError::Missing(var))) => {
            warnings.push(ConfigWarning {
                path: format!("{path}.api_key"),
                message: format!("provider {name:?} is disabled: environment variable {var} is not set"),
            });
            Credential::Missing { env_var: var }
        }
        Some(Err(e)) => {
            issues.push(format!("{path}.api_key"), describe(e));
            Credential::None
        }
    };
    let base_url = match raw.base_url.as_deref().map(|u| interpolate(u, env)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => {
            issues.push(format!("{path}.base_url"), describe(e));
            String::new()
        }
        None => match kind.default_base_url() {
            Some(u) => u.to_owned(),
            None => {
                issues.push(format!("{path}.base_url"), format!("is required for kind {kind}"));
                String::new()
            }
        },
    };
    if kind != ProviderKind::Echo
        && !base_url.is_empty()
        && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
    {
        issues.push(format!("{path}.base_url"), format!("{base_url:?} must start with http:// or https://"));
    }
    let mut headers = Vec::new();
    for (k, v) in raw.headers {
        let hpath = format!("{path}.headers.{k}");
        let Ok(hname) = http::HeaderName::from_bytes(k.as_bytes()) else {
            issues.push(hpath, "is not a valid header name");
            continue;
        };
        match interpolate(&v, env).map_err(describe) {
            Ok(v) => match http::HeaderValue::from_str(&v) {
                Ok(mut hv) => {
                    hv.set_sensitive(true);
                    headers.push((hname, hv));
                }
                Err(_) => issues.push(hpath, "is not a valid header value"),
            },
            Err(m) => issues.push(hpath, m),
        }
    }
    Some(ProviderConfig {
        kind,
        credential,
        base_url,
        api_version: raw.api_version,
        headers,
        timeouts: raw.timeouts,
    })
}

fn suggested_var(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "OPENAI_API_KEY",
        ProviderKind::Azure => "AZURE_OPENAI_API_KEY",
        ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        ProviderKind::Gemini => "GEMINI_API_KEY",
        ProviderKind::Cohere => "COHERE_API_KEY",
        ProviderKind::OpenAiCompatible | ProviderKind::Echo => "API_KEY",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_example_config_parses_without_keys_and_disables_keyed_providers() {
        let yaml = include_str!("../../../tollgate.yaml");
        let (config, warnings) = Config::parse(yaml, &env(&[])).unwrap();
        assert!(config.models.contains_key("echo"));
        assert!(warnings.iter().any(|w| w.message.contains("OPENAI_API_KEY")), "{warnings:?}");
        let (_, warnings) = Config::parse(yaml, &env(&[("OPENAI_API_KEY", "sk-x")])).unwrap();
        assert!(!warnings.iter().any(|w| w.message.contains("OPENAI_API_KEY")));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = r#"
listen: nowhere
providers:
  anthropic: { kind: anthropic, api_key: "k" }
  weird: { kind: llama }
  az: { kind: azure, api_key: "k" }
models:
  claude:
    deployments:
      - { provider: antropic, model: claude-sonnet-4-5 }
      - { provider: anthropic, model: "", timeouts: { total: 0s } }
  empty: { deployments: [] }
"#;
        let err = Config::parse(yaml, &env(&[])).unwrap_err();
        let text = err.to_string();
        for expected in [
            "listen: \"nowhere\" is not an address",
            "providers.weird.kind: unknown provider kind \"llama\"",
            "providers.az.base_url: is required for kind azure",
            "models.claude.deployments[0].provider: unknown provider \"antropic\"",
            "models.claude.deployments[1].model: must not be empty",
            "models.claude.deployments[1].timeouts.total: must be greater than 0",
            "models.empty.deployments: needs at least one deployment",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn unknown_fields_and_type_errors_name_their_path() {
        let err = Config::parse("providers: { a: { kind: openai, api_kye: x } }", &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("providers.a"), "{err}");
        assert!(err.to_string().contains("api_kye"), "{err}");
        let err = Config::parse("server: { max_body_bytes: lots }", &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("server.max_body_bytes"), "{err}");
    }

    #[test]
    fn deployment_timeouts_override_provider_timeouts_override_defaults() {
        let yaml = r#"
providers:
  local: { kind: openai_compatible, base_url: "http://127.0.0.1:1/v1", timeouts: { first_byte: 7s } }
models:
  m: { deployments: [ { provider: local, model: x, timeouts: { total: 9s } } ] }
"#;
        let (c, _) = Config::parse(yaml, &env(&[])).unwrap();
        let t = c.models["m"].deployments[0].timeouts;
        assert_eq!(t.connect, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(t.first_byte, Duration::from_secs(7));
        assert_eq!(t.total, Duration::from_secs(9));
        assert_eq!(c.models["m"].deployments[0].name, "local/x");
    }
}
