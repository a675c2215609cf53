//! [`GatewayError`] → HTTP response in the OpenAI dialect:
//! `{"error":{"message","type","param","code"}}` with the kind's status and `Retry-After`.
//!
//! The error is also stored in the response extensions, so the one logging middleware
//! ([`crate::observe`]) logs it once, with the request id.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tollgate_types::{ErrorKind, GatewayError};

/// A gateway error on its way out, in OpenAI's shape.
pub struct ApiError(pub GatewayError);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        Self(e)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: &'static str,
}

impl<'a> ErrorObject<'a> {
    pub fn new(e: &'a GatewayError) -> Self {
        Self {
            message: &e.message,
            kind: e.kind.openai_type(),
            param: e.param.as_deref(),
            code: e.kind.code(),
        }
    }
}

/// The JSON body of an error (also used as the last event of a broken stream).
pub fn openai_error_json(e: &GatewayError) -> Bytes {
    let body = Body { error: ErrorObject::new(e) };
    // Serializing plain strings cannot fail; fall back to a fixed body rather than panic.
    serde_json::to_vec(&body).map(Bytes::from).unwrap_or_else(|_| Bytes::from_static(br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            openai_error_json(&self.0),
        )
            .into_response();
        if let Some(ra) = self.0.retry_after {
            // Round up: "Retry-After: 0" for 0.4 s would invite an immediate retry.
            let secs = ra.as_secs() + u64::from(ra.subsec_nanos() > 0);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            // The official SDKs read this first: a client may retry after 1.2 s instead of 2 s.
            let ms = u64::try_from(ra.as_millis()).unwrap_or(u64::MAX).max(1);
            resp.headers_mut().insert("retry-after-ms", HeaderValue::from(ms));
        }
        if self.0.kind == ErrorKind::BudgetExceeded {
            // A spent budget does not come back in seconds: tells the official SDKs (which
            // retry 429s by default) not to retry.
            resp.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
        }
        resp.extensions_mut().insert(Arc::new(self.0));
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_types::ErrorKind;

    use super::*;

    #[test]
    fn errors_render_in_openai_shape_with_retry_after() {
        let e = GatewayError::new(ErrorKind::UpstreamRateLimited, "slow down")
            .with_retry_after(Some(Duration::from_millis(1500)));
        let resp = ApiError(e).into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(resp.headers()["retry-after-ms"], "1500");
        let body = openai_error_json(&GatewayError::invalid_field("temperature", "too hot"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "temperature: too hot", "type": "invalid_request_error",
                "param": "temperature", "code": "invalid_request"}})
        );
    }
}
