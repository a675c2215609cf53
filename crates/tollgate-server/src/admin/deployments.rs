//! `GET /admin/v1/deployments`: every alias with its routing and the live state of each
//! deployment (breaker, cooldown, in-flight, latency averages, headroom). Super-admin only: it
//! describes the gateway's providers, shared by every tenant. Needs no store: the state is this
//! node's own.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use tokio::time::Instant;
use tollgate_core::auth::Principal;
use tollgate_core::routing::HealthSnapshot;
use tollgate_types::{ErrorKind, GatewayError};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::errors::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<AliasView>,
}

/// One alias and how it routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasView {
    pub alias: String,
    /// `ordered`, `weighted`, `least_busy`, `latency`, `cost` or `usage`.
    pub strategy: &'static str,
    pub fallbacks: Vec<String>,
    pub context_window_fallback: Option<String>,
    pub content_policy_fallback: Option<String>,
    pub deployments: Vec<DeploymentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    pub name: String,
    /// The provider entry of the config.
    pub provider: String,
    /// The provider kind (`openai`, `anthropic`, ...).
    pub provider_kind: &'static str,
    pub model: String,
    pub weight: u32,
    pub priority: i32,
    /// Tags and region.
    pub tags: Vec<String>,
    pub context_window: Option<u64>,
    /// Breaker state (`closed`, `open`, `half_open`), `open_until_ms`, `cooling_down_ms`,
    /// `in_flight`, `ewma_ttft_ms`, `ewma_total_ms`, `latency_score_ms`, `headroom`,
    /// `successes`, `failures`, `rate_limited`, `last_error_ms_ago`.
    #[schema(value_type = Object)]
    pub health: HealthSnapshot,
}

/// Every alias, its routing, and the live health of its deployments (super-admin only).
#[utoipa::path(operation_id = "list_deployments", get, path = "/admin/v1/deployments", tag = "routing",
    responses((status = 200, body = DeploymentList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<DeploymentList>, ApiError> {
    if !matches!(principal, Principal::SuperAdmin) {
        return Err(GatewayError::new(
            ErrorKind::Forbidden,
            "Only the super-admin can see the gateway's deployments.",
        )
        .into());
    }
    let now = Instant::now();
    let mut routes: Vec<_> = state.gateway.routes().collect();
    routes.sort_by(|a, b| a.alias.cmp(&b.alias));
    let data = routes
        .into_iter()
        .map(|r| AliasView {
            alias: r.alias.clone(),
            strategy: r.routing.strategy.as_str(),
            fallbacks: r.routing.fallbacks.clone(),
            context_window_fallback: r.routing.context_window_fallback.clone(),
            content_policy_fallback: r.routing.content_policy_fallback.clone(),
            deployments: r
                .deployments
                .iter()
                .map(|d| DeploymentView {
                    name: d.name.clone(),
                    provider: d.provider.clone(),
                    provider_kind: d.provider_kind,
                    model: d.upstream_model.clone(),
                    weight: d.routing.weight,
                    priority: d.routing.priority,
                    tags: d.routing.tags.iter().cloned().collect(),
                    context_window: d.routing.context_window,
                    health: d.health.snapshot(now),
                })
                .collect(),
        })
        .collect();
    Ok(Json(DeploymentList { object: "list", data }))
}
