//! The HTTP call shared by all adapters: send with a first-byte deadline, classify failures,
//! read a JSON body within the total deadline.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout_at};
use tollgate_types::ports::{CallCtx, ProviderError, ProviderErrorKind, QuotaCell, parse_retry_after};

/// Upstream error bodies longer than this are cut before their message is extracted.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Turns an upstream's error body into a message (each provider knows its own error shape).
pub type ErrorMessageFn = fn(&Bytes) -> Option<String>;

/// Deadlines of one call, fixed when the call starts.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub first_byte: Instant,
    pub total: Instant,
}

impl Deadlines {
    pub fn start(call: &CallCtx) -> Self {
        let now = Instant::now();
        let total = now + call.total_timeout;
        Self { first_byte: (now + call.first_byte_timeout).min(total), total }
    }
}

/// Sends the request and waits for the response headers. A non-success status becomes a
/// classified [`ProviderError`] carrying the upstream's own message (via `error_message`) and
/// `Retry-After`. Whatever the status, the upstream's rate-limit headers go into `quota` (the
/// call's [`CallCtx::quota`]) for usage-based routing.
pub async fn send(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    deadlines: Deadlines,
    quota: &QuotaCell,
    error_message: ErrorMessageFn,
) -> Result<reqwest::Response, ProviderError> {
    let response = match timeout_at(deadlines.first_byte, request.send()).await {
        Err(_) => return Err(timeout(provider, "no response headers before the first-byte deadline")),
        Ok(Err(e)) => return Err(transport_error(provider, &e)),
        Ok(Ok(r)) => r,
    };
    quota.observe(response.headers());
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = match timeout_at(deadlines.total, response.bytes()).await {
        Ok(Ok(b)) => b.slice(..b.len().min(MAX_ERROR_BODY)),
        _ => Bytes::new(),
    };
    let message = error_message(&body).unwrap_or_else(|| {
        status.canonical_reason().map_or_else(|| format!("HTTP {}", status.as_u16()), str::to_owned)
    });
    Err(ProviderError::from_status(provider, status.as_u16(), message).with_retry_after(retry_after))
}

/// Reads and decodes a whole JSON body before the total deadline.
pub async fn read_json<T: DeserializeOwned>(
    provider: &'static str,
    response: reqwest::Response,
    deadlines: Deadlines,
) -> Result<T, ProviderError> {
    let body = read_body(provider, response, deadlines).await?;
    serde_json::from_slice(&body).map_err(|e| ProviderError::invalid_response(provider, e))
}

/// Reads a whole body before the total deadline.
pub async fn read_body(
    provider: &'static str,
    response: reqwest::Response,
    deadlines: Deadlines,
) -> Result<Bytes, ProviderError> {
    match timeout_at(deadlines.total, response.bytes()).await {
        Err(_) => Err(timeout(provider, "the response body did not complete before the total deadline")),
        Ok(Err(e)) => Err(transport_error(provider, &e)),
        Ok(Ok(b)) => Ok(b),
    }
}

pub fn timeout(provider: &'static str, what: &str) -> ProviderError {
    ProviderError::new(provider, ProviderErrorKind::Timeout, what)
}

/// Classifies a reqwest failure. Only its predicates are read: its Display includes the URL,
/// which may hold a key (Gemini's `?key=`).
pub fn transport_error(provider: &'static str, e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        return timeout(provider, "the upstream timed out");
    }
    if e.is_decode() {
        return ProviderError::invalid_response(provider, "the body could not be decoded");
    }
    let what = if e.is_connect() { "connection failed" } else { "the connection broke" };
    ProviderError::new(provider, ProviderErrorKind::Connect, what)
}

/// Builds the shared, pooled HTTP client for one connect timeout.
pub fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Extracts `error.message` from the common `{"error":{"message":...}}` shape, or a top-level
/// `message`; used by several providers.
pub fn common_error_message(body: &Bytes) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<Inner>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Object { message: Option<String> },
        Text(String),
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    match b.error {
        Some(Inner::Object { message: Some(m) }) | Some(Inner::Text(m)) => Some(m),
        _ => b.message,
    }
}
