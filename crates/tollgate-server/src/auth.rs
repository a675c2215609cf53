//! Authentication: every route needs a key except the [`PUBLIC_ROUTES`] allowlist. Until
//! tenancy lands, the one accepted key is the gateway's bootstrap key (`TOLLGATE_ADMIN_KEY`),
//! compared in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tollgate_types::{ErrorKind, GatewayError};

use crate::app::AppState;
use crate::errors::ApiError;

/// Routes that answer without a key: probes and metrics scrapes.
pub const PUBLIC_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The middleware. Fails closed: anything but a matching key is a 401.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if PUBLIC_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = presented_key(&req);
    let ok =
        presented.is_some_and(|k| bool::from(k.as_bytes().ct_eq(state.admin_key.expose_secret().as_bytes())));
    if ok {
        return next.run(req).await;
    }
    let message = match presented {
        None => "Missing API key: send it as `Authorization: Bearer <key>`.",
        Some(_) => "Invalid API key.",
    };
    ApiError(GatewayError::new(ErrorKind::Unauthenticated, message)).into_response()
}

/// The key from `Authorization: Bearer <key>`, or from `x-api-key` (Anthropic clients send it
/// there).
fn presented_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}
