//! The outermost layer: request id, in-flight gauge, and the one place errors are logged.
//!
//! The request id is the client's `x-request-id` when it sent a sane one, else a new UUIDv7; it
//! is echoed on every response and handed to handlers as a [`RequestId`] extension.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tollgate_core::metrics::IN_FLIGHT;
use tollgate_types::{ErrorOrigin, GatewayError};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Takes or makes the request id, counts the request in flight, logs its error once.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();

    let gauge = metrics::gauge!(IN_FLIGHT);
    gauge.increment(1.0);
    let mut resp = next.run(req).await;
    gauge.decrement(1.0);

    if let Some(err) = resp.extensions().get::<Arc<GatewayError>>() {
        log_error(&id, method.as_str(), &path, err);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

fn log_error(request_id: &str, method: &str, path: &str, err: &GatewayError) {
    let status = err.status();
    let attempts: Vec<String> =
        err.attempts.iter().map(|a| format!("{}: {}", a.deployment, a.error)).collect();
    match err.origin {
        ErrorOrigin::Client => {
            tracing::info!(request_id, method, path, status, code = err.kind.code(), message = %err.message, "request rejected");
        }
        ErrorOrigin::Upstream | ErrorOrigin::Internal if status >= 500 => {
            tracing::error!(request_id, method, path, status, code = err.kind.code(), message = %err.message, ?attempts, "request failed");
        }
        ErrorOrigin::Upstream | ErrorOrigin::Internal => {
            tracing::warn!(request_id, method, path, status, code = err.kind.code(), message = %err.message, ?attempts, "request failed");
        }
    }
}
