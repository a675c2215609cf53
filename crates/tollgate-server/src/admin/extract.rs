//! Extractors of the admin API. Each failure is an [`ApiError`] in OpenAI's shape naming the
//! parameter at fault, never axum's plain-text rejection:
//! - [`Admin`]: the [`AdminService`] and the [`Caller`] (503 without a store);
//! - [`Ids`]: path parameters (`tenant_id`, `key_id`, ...) parsed into typed ids;
//! - [`ListQuery`]: query parameters, `limit` (1..=500, default 50) and `after` on every list.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tollgate_core::admin::{AdminService, Caller};
use tollgate_core::auth::Principal;
use tollgate_types::ports::store::{ChangeEvent, KeyFilter};
use tollgate_types::tenancy::{CredentialId, KeyId, MemberId, PageRequest, ProjectId, TenantId};
use tollgate_types::{ErrorKind, GatewayError};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::app::AppState;
use crate::errors::ApiError;

/// The admin service for this request, and who is calling.
pub struct Admin {
    pub service: AdminService,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(store) = &state.store else {
            return Err(GatewayError::new(
                ErrorKind::Unavailable,
                "The admin API is unavailable: this gateway runs without a store.",
            )
            .into());
        };
        // The auth middleware inserts it on every non-public route; missing means a wiring bug.
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| GatewayError::new(ErrorKind::Unauthenticated, "Missing API key."))?;
        let (auth, gateway) = (state.auth.clone(), state.gateway.clone());
        // Changes are applied to this node's caches at once; other nodes hear of them through
        // the store's change feed.
        let service =
            AdminService::new(store.admin.clone(), state.master_keys.clone(), state.providers.clone())
                .with_usage(store.usage.clone())
                .with_notifier(Arc::new(move |change| {
                    let event = ChangeEvent::Changed(change);
                    auth.apply(event);
                    gateway.apply(event);
                }));
        Ok(Admin { service, caller: Caller::from_principal(principal) })
    }
}

/// Path parameters decoded into `T` (one of the `*Path` structs below); a malformed id is a
/// 400 naming the parameter.
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| GatewayError::invalid_request("A path parameter is not valid UTF-8."))?;
        let map: serde_json::Map<String, serde_json::Value> =
            raw.iter().map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned()))).collect();
        serde_path_to_error::deserialize(serde_json::Value::Object(map)).map(Ids).map_err(|e| {
            let param = e.path().to_string();
            ApiError(GatewayError::invalid_field(
                &param,
                "must be an id (a UUID such as 0192f1d2-7c4e-7b6a-9d0e-3f5a6b7c8d9e)",
            ))
        })
    }
}

/// Query parameters decoded into `T`; unknown or malformed ones are a 400 naming them.
pub struct ListQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ListQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri).map(|Query(q)| ListQuery(q)).map_err(|rejection| {
            // axum's text is "Failed to deserialize query string: <param>: <what>".
            let text = rejection.body_text();
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            let param = detail
                .split_once(": ")
                .map(|(p, _)| p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let err = match param {
                Some(p) => GatewayError::invalid_field(p, detail.split_once(": ").map_or(detail, |(_, d)| d)),
                None => GatewayError::invalid_request(format!("Invalid query string: {detail}")),
            };
            ApiError(err)
        })
    }
}

/// `limit` and `after` → the store's page request.
fn page_request(limit: Option<u32>, after: Option<Uuid>) -> Result<PageRequest, GatewayError> {
    let limit = limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
    if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
        return Err(GatewayError::invalid_field(
            "limit",
            format!("must be between 1 and {} (got {limit})", PageRequest::MAX_LIMIT),
        ));
    }
    Ok(PageRequest { limit, after })
}

/// Pagination of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<Uuid>,
}

impl PageQuery {
    pub fn page(&self) -> Result<PageRequest, GatewayError> {
        page_request(self.limit, self.after)
    }
}

/// Pagination and filters of the key list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<Uuid>,
    /// Only keys of this project.
    pub project_id: Option<Uuid>,
    /// Include revoked keys (default false).
    pub include_revoked: Option<bool>,
}

impl KeyListQuery {
    pub fn page(&self) -> Result<PageRequest, GatewayError> {
        page_request(self.limit, self.after)
    }

    pub fn filter(&self) -> KeyFilter {
        KeyFilter {
            project_id: self.project_id.map(ProjectId),
            include_revoked: self.include_revoked.unwrap_or(false),
        }
    }
}

// === path parameters ===

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    #[param(value_type = Uuid)]
    pub tenant_id: TenantId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    #[param(value_type = Uuid)]
    pub tenant_id: TenantId,
    #[param(value_type = Uuid)]
    pub project_id: ProjectId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    #[param(value_type = Uuid)]
    pub tenant_id: TenantId,
    #[param(value_type = Uuid)]
    pub member_id: MemberId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    #[param(value_type = Uuid)]
    pub tenant_id: TenantId,
    #[param(value_type = Uuid)]
    pub key_id: KeyId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CredentialPath {
    #[param(value_type = Uuid)]
    pub tenant_id: TenantId,
    #[param(value_type = Uuid)]
    pub credential_id: CredentialId,
}
