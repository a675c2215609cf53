//! The response cache: a tenant's admins purge its cached answers.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_types::{ErrorKind, GatewayError};
use utoipa::ToSchema;

use super::extract::{Admin, Ids, TenantPath};
use crate::app::AppState;
use crate::errors::ApiError;
use crate::extract::JsonBody;

/// Which of the tenant's entries to remove; an empty body removes them all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeCache {
    /// Only answers of this model alias.
    pub model: Option<String>,
    /// Only answers stored before this time (RFC 3339).
    pub created_before: Option<String>,
    /// Only answers older than this many seconds (an alternative to `created_before`).
    pub older_than_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    /// `cache.purge`.
    pub object: &'static str,
    /// Entries removed.
    pub purged: u64,
}

/// Removes the tenant's cached answers: all, one alias's, and/or those stored before a time.
/// Admins and owners of the tenant (and the super-admin).
#[utoipa::path(operation_id = "purge_cache", post, path = "/admin/v1/tenants/{tenant_id}/cache/purge", tag = "cache",
    params(TenantPath), request_body = PurgeCache, responses((status = 200, body = Purged)))]
pub async fn purge(
    State(state): State<AppState>,
    admin: Admin,
    Ids(p): Ids<TenantPath>,
    JsonBody(body): JsonBody<PurgeCache>,
) -> Result<Json<Purged>, ApiError> {
    let Some(cache) = state.gateway.response_cache() else {
        return Err(GatewayError::new(ErrorKind::Unavailable, "This gateway has no response cache.").into());
    };
    let created_before = match (body.created_before.as_deref(), body.older_than_seconds) {
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid_field(
                "older_than_seconds",
                "give either created_before or older_than_seconds, not both",
            )
            .into());
        }
        (Some(t), None) => Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
            GatewayError::invalid_field(
                "created_before",
                "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z",
            )
        })?),
        (None, Some(secs)) => {
            let age = i64::try_from(secs)
                .ok()
                .and_then(|s| OffsetDateTime::now_utc().checked_sub(time::Duration::seconds(s)))
                .ok_or_else(|| GatewayError::invalid_field("older_than_seconds", "is too large"))?;
            Some(age)
        }
        (None, None) => None,
    };
    let purged =
        admin.service.purge_cache(&admin.caller, p.tenant_id, cache, body.model, created_before).await?;
    Ok(Json(Purged { object: "cache.purge", purged }))
}
