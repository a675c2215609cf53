//! Authentication: every route needs a key except the [`PUBLIC_ROUTES`] allowlist. The key
//! resolves to a [`Principal`] (the bootstrap super-admin, or a tenant's key), inserted as a
//! request extension. Model routes need the `inference` scope, admin routes the `admin` scope.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tollgate_core::auth::Principal;
use tollgate_types::tenancy::KeyScope;
use tollgate_types::{ErrorKind, GatewayError};

use crate::app::AppState;
use crate::errors::ApiError;

/// Routes that answer without a key: probes and metrics scrapes.
pub const PUBLIC_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics", "/admin/v1/openapi.json"];

/// The middleware. Fails closed: anything but a valid key with the right scope is refused.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if PUBLIC_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(presented) = presented_key(&req) else {
        return ApiError(GatewayError::new(
            ErrorKind::Unauthenticated,
            "Missing API key: send it as `Authorization: Bearer <key>`.",
        ))
        .into_response();
    };
    let principal = match state.auth.authenticate(presented).await {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let scope = if req.uri().path().starts_with("/admin/") { KeyScope::Admin } else { KeyScope::Inference };
    if !principal.has_scope(scope) {
        return ApiError(GatewayError::new(
            ErrorKind::Forbidden,
            format!(
                "This API key does not have the `{}` scope needed for {}.",
                scope.as_str(),
                req.uri().path()
            ),
        ))
        .into_response();
    }
    req.extensions_mut().insert::<Principal>(principal);
    next.run(req).await
}

/// The key from `Authorization: Bearer <key>`, or from `x-api-key` (Anthropic clients send it
/// there).
fn presented_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}
