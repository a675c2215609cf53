//! Client dialects. Each turns its wire format into canonical requests, runs the pipeline, and
//! encodes the outcome back.

pub mod openai;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use tollgate_core::limits::RateLimitHeaders;
use tollgate_core::limits::enforcer::reset_text;
use tollgate_core::registry::Deployment;
use tollgate_types::ports::LimitStatus;

/// Names the provider kind that answered.
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Names the deployment that answered.
pub const DEPLOYMENT_HEADER: &str = "x-tollgate-deployment";

/// Adds the headers naming who answered and the caller's rate-limit state.
pub fn with_served(mut resp: Response, d: &Deployment, limits: &RateLimitHeaders) -> Response {
    let h = resp.headers_mut();
    h.insert(PROVIDER_HEADER, HeaderValue::from_static(d.provider_kind));
    if let Ok(v) = HeaderValue::from_str(&d.name) {
        h.insert(DEPLOYMENT_HEADER, v);
    }
    rate_limit_headers(h, "requests", limits.requests.as_ref());
    rate_limit_headers(h, "tokens", limits.tokens.as_ref());
    resp
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
fn rate_limit_headers(h: &mut HeaderMap, what: &str, status: Option<&LimitStatus>) {
    let Some(s) = status else { return };
    let mut put = |name: String, value: String| {
        if let (Ok(n), Ok(v)) = (axum::http::HeaderName::try_from(name), HeaderValue::try_from(value)) {
            h.insert(n, v);
        }
    };
    put(format!("x-ratelimit-limit-{what}"), s.limit.to_string());
    put(format!("x-ratelimit-remaining-{what}"), s.remaining.to_string());
    if let Some(reset) = s.reset_after {
        put(format!("x-ratelimit-reset-{what}"), reset_text(reset));
    }
}
