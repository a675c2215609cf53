//! Model aliases → deployments, built once from the config: each deployment owns its adapter
//! (built with the pooled HTTP client for its connect timeout), so the hot path only looks up an
//! alias in a map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tollgate_providers::{ProviderSettings, build_adapter, http::build_client};
use tollgate_types::ports::ProviderAdapter;

use crate::config::{Config, ConfigError, ConfigIssue, Timeouts};

/// One way to serve an alias: a provider, an upstream model and its deadlines.
pub struct Deployment {
    /// Shown in `x-tollgate-deployment`, metrics and logs.
    pub name: String,
    /// The provider entry's name in the config.
    pub provider: String,
    /// The provider kind (`openai`, `anthropic`, ...), a bounded metric label.
    pub provider_kind: &'static str,
    pub upstream_model: String,
    pub timeouts: Timeouts,
    pub adapter: Arc<dyn ProviderAdapter>,
}

/// An alias and its deployments, in the order they are tried.
pub struct ModelRoute {
    pub alias: String,
    pub description: Option<String>,
    pub deployments: Vec<Arc<Deployment>>,
}

pub struct Registry {
    routes: HashMap<String, Arc<ModelRoute>>,
    /// Aliases in name order, for `GET /v1/models`.
    aliases: Vec<String>,
}

impl Registry {
    /// Builds every adapter. Fails only if an HTTP client cannot be built (TLS set-up).
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        let mut clients: BTreeMap<Duration, reqwest::Client> = BTreeMap::new();
        let mut routes = HashMap::with_capacity(config.models.len());
        let mut issues = Vec::new();
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
                match build_adapter(provider.kind, settings) {
                    Ok(adapter) => deployments.push(Arc::new(Deployment {
                        name: d.name.clone(),
                        provider: d.provider.clone(),
                        provider_kind: provider.kind.as_str(),
                        upstream_model: d.model.clone(),
                        timeouts: d.timeouts,
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
                    deployments,
                }),
            );
        }
        if !issues.is_empty() {
            return Err(ConfigError { issues });
        }
        let mut aliases: Vec<String> = routes.keys().cloned().collect();
        aliases.sort();
        Ok(Self { routes, aliases })
    }

    pub fn route(&self, alias: &str) -> Option<&Arc<ModelRoute>> {
        self.routes.get(alias)
    }

    /// Every alias with its route, in name order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.aliases.iter().filter_map(|a| self.routes.get(a))
    }
}
