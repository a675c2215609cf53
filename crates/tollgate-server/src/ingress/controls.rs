//! The client's routing headers (`docs/routing.md`): turn fallbacks off, pin deployment tags,
//! bound the whole request and each attempt's wait for its first byte. A malformed value is a 400 naming the header, never ignored: a
//! client that asked for EU-only deployments must not silently get any deployment.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use tollgate_core::cache::CacheRequest;
use tollgate_core::pipeline::RouteControls;
use tollgate_types::GatewayError;

use crate::errors::ApiError;

pub const FALLBACKS_HEADER: &str = "x-tollgate-fallbacks";
pub const TAGS_HEADER: &str = "x-tollgate-tags";
pub const TIMEOUT_HEADER: &str = "x-tollgate-timeout";
pub const FIRST_BYTE_TIMEOUT_HEADER: &str = "x-tollgate-first-byte-timeout";

/// Longest `x-tollgate-timeout` accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most tags one request may pin.
const MAX_TAGS: usize = 8;

/// [`RouteControls`] as an extractor.
pub struct Controls(pub RouteControls);

impl<S: Send + Sync> FromRequestParts<S> for Controls {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse(&parts.headers).map(Controls).map_err(ApiError)
    }
}

/// The request's cache headers (`x-tollgate-cache`, `Cache-Control`) as an extractor; a
/// malformed `x-tollgate-cache` is a 400 naming the header and what it accepts.
pub struct CacheHeaders(pub CacheRequest);

impl<S: Send + Sync> FromRequestParts<S> for CacheHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        CacheRequest::from_headers(&parts.headers)
            .map(CacheHeaders)
            .map_err(|e| ApiError(GatewayError::invalid_request(e.to_string())))
    }
}

fn parse(headers: &HeaderMap) -> Result<RouteControls, GatewayError> {
    let text = |name: &str| -> Result<Option<&str>, GatewayError> {
        headers
            .get(name)
            .map(|v| v.to_str().map(str::trim).map_err(|_| bad(name, "must be visible ASCII")))
            .transpose()
    };
    let no_fallbacks = match text(FALLBACKS_HEADER)? {
        None | Some("on") => false,
        Some("off") => true,
        Some(_) => return Err(bad(FALLBACKS_HEADER, "must be `on` or `off`")),
    };
    let mut tags = Vec::new();
    if let Some(list) = text(TAGS_HEADER)? {
        for tag in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !tollgate_core::config::valid_tag(tag) {
                return Err(bad(TAGS_HEADER, "tags use 1-64 letters, digits, '-', '_', '.' or ':'"));
            }
            tags.push(tag.to_owned());
        }
        if tags.len() > MAX_TAGS {
            return Err(bad(TAGS_HEADER, "at most 8 tags"));
        }
    }
    let timeout = match text(TIMEOUT_HEADER)? {
        None => None,
        Some(v) => Some(duration(v).ok_or_else(|| {
            bad(TIMEOUT_HEADER, "must be a duration like `30s`, `1500ms`, `2m` or seconds, from 1ms to 1h")
        })?),
    };
    let first_byte_timeout = match text(FIRST_BYTE_TIMEOUT_HEADER)? {
        None => None,
        Some(v) => Some(duration(v).ok_or_else(|| {
            bad(
                FIRST_BYTE_TIMEOUT_HEADER,
                "must be a duration like `5s`, `800ms`, `1m` or seconds, from 1ms to 1h",
            )
        })?),
    };
    Ok(RouteControls { no_fallbacks, tags, timeout, first_byte_timeout })
}

/// `30` (seconds), `30s`, `1500ms`, `2m`.
fn duration(v: &str) -> Option<Duration> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = v.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero() && d <= MAX_TIMEOUT).then_some(d)
}

fn bad(header: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("header {header}: {why}"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_every_control() {
        let c = parse(&headers(&[
            (FALLBACKS_HEADER, "off"),
            (TAGS_HEADER, "eu, fast"),
            (TIMEOUT_HEADER, "1500ms"),
            (FIRST_BYTE_TIMEOUT_HEADER, "800ms"),
        ]))
        .unwrap();
        assert_eq!(
            c,
            RouteControls {
                no_fallbacks: true,
                tags: vec!["eu".into(), "fast".into()],
                timeout: Some(Duration::from_millis(1500)),
                first_byte_timeout: Some(Duration::from_millis(800)),
            }
        );
        assert_eq!(
            parse(&headers(&[(TIMEOUT_HEADER, "30")])).unwrap().timeout,
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse(&HeaderMap::new()).unwrap(), RouteControls::default());
    }

    #[test]
    fn rejects_bad_values_naming_the_header() {
        for (h, v) in [
            (FALLBACKS_HEADER, "maybe"),
            (TAGS_HEADER, "eu,<script>"),
            (TIMEOUT_HEADER, "soon"),
            (TIMEOUT_HEADER, "0"),
            (TIMEOUT_HEADER, "2h"),
            (FIRST_BYTE_TIMEOUT_HEADER, "fast"),
            (FIRST_BYTE_TIMEOUT_HEADER, "0ms"),
        ] {
            let err = parse(&headers(&[(h, v)])).unwrap_err();
            assert!(err.message.contains(h), "{h}: {v}: {}", err.message);
            assert_eq!(err.status(), 400);
        }
    }
}
