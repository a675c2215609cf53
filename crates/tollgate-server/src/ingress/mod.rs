//! Client dialects. Each turns its wire format into canonical requests, runs the pipeline, and
//! encodes the outcome back.

pub mod openai;

use axum::http::HeaderValue;
use axum::response::Response;
use tollgate_core::registry::Deployment;

/// Names the provider kind that answered.
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Names the deployment that answered.
pub const DEPLOYMENT_HEADER: &str = "x-tollgate-deployment";

/// Adds the headers naming who answered.
pub fn with_served(mut resp: Response, d: &Deployment) -> Response {
    let h = resp.headers_mut();
    h.insert(PROVIDER_HEADER, HeaderValue::from_static(d.provider_kind));
    if let Ok(v) = HeaderValue::from_str(&d.name) {
        h.insert(DEPLOYMENT_HEADER, v);
    }
    resp
}
