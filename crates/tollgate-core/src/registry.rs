//! Model aliases → deployments, built once from the config: each deployment owns its adapter
//! (built with the pooled HTTP client for its connect timeout), so the hot path only looks up an
//! alias in a map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use tollgate_providers::{Credential, ProviderKind, ProviderSettings, build_adapter, http::build_client};
use tollgate_types::ports::{CallCtx, ChunkStream, ProviderAdapter, ProviderError};
use tollgate_types::tenancy::CredentialId;
use tollgate_types::{ChatRequest, ChatResponse};

use crate::byok::TenantCredential;

use crate::config::{Config, ConfigError, ConfigIssue, Timeouts};

/// One way to serve an alias: a provider, an upstream model and its deadlines.
pub struct Deployment {
    /// Position in the registry; with a credential id it keys tenant-specific adapters.
    pub index: usize,
    /// Shown in `x-tollgate-deployment`, metrics and logs.
    pub name: String,
    /// `name` as a metric label: cloning it per request is a reference count, not a copy.
    pub label: metrics::SharedString,
    /// The provider entry's name in the config.
    pub provider: String,
    /// The provider kind (`openai`, `anthropic`, ...), a bounded metric label.
    pub provider_kind: &'static str,
    pub upstream_model: String,
    pub timeouts: Timeouts,
    /// The adapter with the gateway's own credential for this provider.
    pub adapter: Arc<dyn ProviderAdapter>,
    /// This deployment's own limits (its provider account's quota), shared by every caller.
    pub limits: tollgate_types::limits::RateLimits,
    /// Those limits as reservations, built once.
    pub limit_plan: Arc<crate::limits::Plan>,
    /// The provider kind (prices are namespaced by it).
    pub kind: ProviderKind,
    /// Weight, priority, tags and context window.
    pub routing: crate::config::DeploymentRouting,
    /// Live state: breaker, latency, in-flight, cooldown (kept across requests of every tenant).
    pub health: Arc<crate::routing::DeploymentHealth>,
    /// What the adapter was built from, to build variants with a tenant's credential.
    settings: ProviderSettings,
}

/// An alias and its deployments, in the order they are tried.
pub struct ModelRoute {
    pub alias: String,
    pub description: Option<String>,
    /// In config order; `Deployment::routing` and the selector decide the order of attempts.
    pub deployments: Vec<Arc<Deployment>>,
    pub routing: crate::config::AliasRouting,
    /// Orders the deployments per request (holds the weighted round-robin state).
    pub selector: crate::routing::Selector,
    /// The alias's response-cache rule (`models.<alias>.cache`).
    pub cache: tollgate_types::cache_rule::CacheRule,
}

pub struct Registry {
    routes: HashMap<String, Arc<ModelRoute>>,
    /// Adapters using a tenant's own credential, by deployment and credential id (never by
    /// key material). Built on first use.
    tenant_adapters: RwLock<HashMap<(usize, CredentialId), Arc<dyn ProviderAdapter>>>,
    /// Aliases in name order, for `GET /v1/models`.
    aliases: Vec<String>,
}

impl Registry {
    /// Builds every adapter. Fails only if an HTTP client cannot be built (TLS set-up).
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        let mut clients: BTreeMap<Duration, reqwest::Client> = BTreeMap::new();
        let mut routes = HashMap::with_capacity(config.models.len());
        let mut issues = Vec::new();
        let mut index = 0;
        for (alias, model) in &config.models {
            let mut deployments = Vec::with_capacity(model.deployments.len());
            for (i, d) in model.deployments.iter().enumerate() {
                let path = format!("models.{alias}.deployments[{i}]");
                let Some(provider) = config.providers.get(&d.provider) else { continue };
                let http = match clients.get(&d.timeouts.connect) {
                    Some(c) => c.clone(),
                    None => match build_client(d.timeouts.connect) {
                        Ok(c) => {
                            clients.insert(d.timeouts.connect, c.clone());
                            c
                        }
                        Err(e) => {
                            issues.push(ConfigIssue {
                                path,
                                message: format!("cannot build an HTTP client: {e}"),
                            });
                            continue;
                        }
                    },
                };
                let settings = ProviderSettings {
                    base_url: provider.base_url.clone(),
                    credential: provider.credential.clone(),
                    headers: provider.headers.clone(),
                    api_version: provider.api_version.clone(),
                    http,
                };
                match build_adapter(provider.kind, settings.clone()) {
                    Ok(adapter) => deployments.push(Arc::new(Deployment {
                        index: post_inc(&mut index),
                        kind: provider.kind,
                        settings,
                        name: d.name.clone(),
                        label: metrics::SharedString::from(Arc::<str>::from(d.name.as_str())),
                        provider: d.provider.clone(),
                        provider_kind: provider.kind.as_str(),
                        upstream_model: d.model.clone(),
                        timeouts: d.timeouts,
                        limits: d.limits,
                        routing: d.routing.clone(),
                        health: Arc::new(crate::routing::DeploymentHealth::new(config.routing.health)),
                        limit_plan: Arc::new(crate::limits::Plan::for_deployment(&d.name, d.limits)),
                        adapter,
                    })),
                    Err(e) => issues.push(ConfigIssue { path, message: e.message }),
                }
            }
            routes.insert(
                alias.clone(),
                Arc::new(ModelRoute {
                    alias: alias.clone(),
                    description: model.description.clone(),
                    selector: crate::routing::Selector::new(
                        model.routing.strategy,
                        deployments.len(),
                        config.routing.health.explore_rate,
                    ),
                    routing: model.routing.clone(),
                    cache: model.cache,
                    deployments,
                }),
            );
        }
        if !issues.is_empty() {
            return Err(ConfigError { issues });
        }
        let mut aliases: Vec<String> = routes.keys().cloned().collect();
        aliases.sort();
        Ok(Self { routes, aliases, tenant_adapters: RwLock::default() })
    }

    /// The deployment's adapter using a tenant's own credential.
    pub fn adapter_with(&self, d: &Deployment, credential: &TenantCredential) -> Arc<dyn ProviderAdapter> {
        let key = (d.index, credential.id);
        if let Some(a) = self.tenant_adapters.read().get(&key) {
            return a.clone();
        }
        let settings =
            ProviderSettings { credential: Credential::Key(credential.secret.clone()), ..d.settings.clone() };
        // Building cannot fail for settings that already built once; fall back to the
        // gateway's adapter would silently use the wrong key, so keep the error visible.
        match build_adapter(d.kind, settings) {
            Ok(adapter) => {
                self.tenant_adapters.write().insert(key, adapter.clone());
                adapter
            }
            Err(e) => Arc::new(FailingAdapter(e)),
        }
    }

    /// Drops adapters built with credentials that changed.
    pub fn forget_tenant_adapters(&self) {
        self.tenant_adapters.write().clear();
    }

    pub fn route(&self, alias: &str) -> Option<&Arc<ModelRoute>> {
        self.routes.get(alias)
    }

    /// Every alias with its route, in name order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.aliases.iter().filter_map(|a| self.routes.get(a))
    }
}

fn post_inc(n: &mut usize) -> usize {
    let v = *n;
    *n += 1;
    v
}

/// Stands in for an adapter that could not be built: every call returns the build error.
struct FailingAdapter(ProviderError);

#[async_trait]
impl ProviderAdapter for FailingAdapter {
    fn kind(&self) -> &'static str {
        self.0.provider
    }
    async fn chat(&self, _: &ChatRequest, _: &CallCtx) -> Result<ChatResponse, ProviderError> {
        Err(self.0.clone())
    }
    async fn chat_stream(&self, _: &ChatRequest, _: &CallCtx) -> Result<ChunkStream, ProviderError> {
        Err(self.0.clone())
    }
}
