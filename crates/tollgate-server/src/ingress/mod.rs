//! Client dialects. Each turns its wire format into canonical requests, runs the pipeline, and
//! encodes the outcome back.

pub mod controls;
pub mod openai;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use tollgate_core::cache::CacheStatus;
use tollgate_core::limits::RateLimitHeaders;
use tollgate_core::limits::enforcer::reset_text;
use tollgate_core::pipeline::{CachedAnswer, Served};
use tollgate_core::registry::{Deployment, ModelRoute};
use tollgate_types::ports::LimitStatus;

/// Names the provider kind that answered.
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Names the deployment that answered.
pub const DEPLOYMENT_HEADER: &str = "x-tollgate-deployment";
/// Names the alias that answered: the requested one, or the fallback that took over.
pub const MODEL_HEADER: &str = "x-tollgate-model";
/// Upstream attempts the answer took.
pub const ATTEMPTS_HEADER: &str = "x-tollgate-attempts";
/// What the response cache did: `hit`, `miss` or `bypass` (chat only).
pub const CACHE_HEADER: &str = tollgate_core::cache::CACHE_HEADER;
/// On a semantic hit: the cosine similarity between the prompt and the stored one.
pub const SIMILARITY_HEADER: &str = "x-tollgate-cache-similarity";

/// Who answered, for the response headers.
pub struct ServedBy<'a> {
    pub deployment: &'a Deployment,
    pub alias: &'a str,
    pub attempts: u32,
    pub limits: &'a RateLimitHeaders,
    pub cache: Option<CacheStatus>,
}

impl<'a> ServedBy<'a> {
    /// From the parts of a [`Served`] whose value was already moved out (streams).
    pub fn parts(
        deployment: &'a Deployment,
        route: &'a ModelRoute,
        attempts: u32,
        limits: &'a RateLimitHeaders,
        cache: Option<CacheStatus>,
    ) -> Self {
        Self { deployment, alias: &route.alias, attempts, limits, cache }
    }
}

impl<'a, T> From<&'a Served<T>> for ServedBy<'a> {
    fn from(s: &'a Served<T>) -> Self {
        Self::parts(&s.deployment, &s.route, s.attempts, &s.rate_limits, s.cache)
    }
}

/// Adds the headers naming who answered and the caller's rate-limit state.
pub fn with_served(mut resp: Response, by: ServedBy<'_>) -> Response {
    let (d, limits) = (by.deployment, by.limits);
    let h = resp.headers_mut();
    h.insert(PROVIDER_HEADER, HeaderValue::from_static(d.provider_kind));
    if let Ok(v) = HeaderValue::from_str(&d.name) {
        h.insert(DEPLOYMENT_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(by.alias) {
        h.insert(MODEL_HEADER, v);
    }
    h.insert(ATTEMPTS_HEADER, HeaderValue::from(by.attempts));
    if let Some(status) = by.cache {
        h.insert(CACHE_HEADER, HeaderValue::from_static(status.as_str()));
    }
    rate_limit_headers(h, &REQUESTS, limits.requests.as_ref());
    rate_limit_headers(h, &TOKENS, limits.tokens.as_ref());
    resp
}

/// The headers of an answer from the response cache: `x-tollgate-cache: hit` (or
/// `semantic-hit` with `x-tollgate-cache-similarity`), no upstream attempts, and the provider
/// and deployment that made the stored answer. No rate-limit headers: a hit takes no limits.
pub fn with_cache_hit(mut resp: Response, hit: &CachedAnswer) -> Response {
    let h = resp.headers_mut();
    let status = match hit.similarity {
        Some(similarity) => {
            // Four decimals: enough to compare with a threshold, stable to read.
            if let Ok(v) = HeaderValue::from_str(&format!("{similarity:.4}")) {
                h.insert(SIMILARITY_HEADER, v);
            }
            CacheStatus::SemanticHit
        }
        None => CacheStatus::Hit,
    };
    h.insert(CACHE_HEADER, HeaderValue::from_static(status.as_str()));
    for (name, value) in [
        (PROVIDER_HEADER, &hit.entry.provider),
        (DEPLOYMENT_HEADER, &hit.entry.deployment),
        (MODEL_HEADER, &hit.alias),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    h.insert(ATTEMPTS_HEADER, HeaderValue::from(0));
    resp
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` names.
static REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

fn rate_limit_headers(
    h: &mut HeaderMap,
    [limit, remaining, reset]: &[HeaderName; 3],
    status: Option<&LimitStatus>,
) {
    let Some(s) = status else { return };
    h.insert(limit.clone(), HeaderValue::from(s.limit));
    h.insert(remaining.clone(), HeaderValue::from(s.remaining));
    if let Some(after) = s.reset_after
        && let Ok(v) = HeaderValue::try_from(reset_text(after))
    {
        h.insert(reset.clone(), v);
    }
}
