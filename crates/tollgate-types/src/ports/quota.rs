//! What an upstream says about its own rate-limit quota, read from its response headers, and the
//! cell an adapter hands that reading back to the router through.
//!
//! The shared HTTP layer of the adapters (`tollgate_providers::http::send`) parses every
//! response's headers, errors included (a 429 typically says "0 remaining"), into the call's
//! [`QuotaCell`]; after the attempt the router moves the reading into the deployment's health,
//! where the `usage` routing strategy ranks deployments by it. Header families understood:
//!
//! - OpenAI, Azure OpenAI, and OpenAI-compatible servers or proxies using the same names:
//!   `x-ratelimit-{limit,remaining}-{requests,tokens}`;
//! - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining}`.
//!
//! A value that is not a plain non-negative integer, or a limit of zero, is ignored (never an
//! error: a misbehaving proxy must not fail a request). A kind (requests, tokens) counts only
//! when both its limit and its remaining are present; where several headers describe one kind
//! (Anthropic's tokens, input tokens and output tokens), the one with the least room left wins.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use parking_lot::Mutex;

/// What one upstream response said about the quota left, as `(remaining, limit)` pairs with
/// `remaining <= limit` and `limit > 0`. At least one of the two is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderQuota {
    /// Requests left in the provider's current window, and the window's limit.
    pub requests: Option<(u64, u64)>,
    /// Tokens left in the provider's current window, and the window's limit.
    pub tokens: Option<(u64, u64)>,
}

/// `(limit header, remaining header)` of each kind, per family.
static REQUESTS: [(HeaderName, HeaderName); 2] = [
    (
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    ),
];

static TOKENS: [(HeaderName, HeaderName); 4] = [
    (
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
    ),
    (
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
    ),
];

impl ProviderQuota {
    /// Reads the rate-limit headers of a response; `None` when there is no usable pair (most
    /// responses of providers that send none cost a few failed lookups and no allocation).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let tightest = |pairs: &[(HeaderName, HeaderName)]| {
            pairs.iter().filter_map(|(limit, remaining)| pair(headers, limit, remaining)).reduce(tighter)
        };
        let quota = Self { requests: tightest(&REQUESTS[..]), tokens: tightest(&TOKENS[..]) };
        (quota.requests.is_some() || quota.tokens.is_some()).then_some(quota)
    }
}

/// One kind's `(remaining, limit)`, when both headers hold plain integers and the limit is not
/// zero. A remaining above the limit (a limit just raised) is cut to the limit.
fn pair(headers: &HeaderMap, limit: &HeaderName, remaining: &HeaderName) -> Option<(u64, u64)> {
    let number = |name: &HeaderName| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let limit = number(limit).filter(|l| *l > 0)?;
    let remaining = number(remaining)?;
    Some((remaining.min(limit), limit))
}

/// The pair with the smaller remaining share (compared without floats or overflow).
fn tighter(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    if u128::from(b.0) * u128::from(a.1) < u128::from(a.0) * u128::from(b.1) { b } else { a }
}

/// Where an adapter leaves the [`ProviderQuota`] of the call's upstream response, for the router
/// to read after the attempt. Clones share one cell (the router keeps a clone of the one it puts
/// in the [`super::CallCtx`]). Allocated once per call context; filling it allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct QuotaCell(Arc<Mutex<Option<ProviderQuota>>>);

impl QuotaCell {
    /// Stores what `headers` say about the quota; headers without a usable reading leave the
    /// cell as it was.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(quota) = ProviderQuota::from_headers(headers) {
            self.set(quota);
        }
    }

    /// Replaces the reading.
    pub fn set(&self, quota: ProviderQuota) {
        *self.0.lock() = Some(quota);
    }

    /// Takes the reading out, leaving the cell empty.
    pub fn take(&self) -> Option<ProviderQuota> {
        self.0.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(HeaderName::from_static(name), http::HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn reads_openais_headers() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        let q = ProviderQuota::from_headers(&h);
        assert_eq!(q, Some(ProviderQuota { requests: Some((59, 60)), tokens: Some((149_984, 150_000)) }));
    }

    #[test]
    fn reads_anthropics_headers_taking_the_tightest_token_limit() {
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "1000"),
            ("anthropic-ratelimit-requests-remaining", "999"),
            ("anthropic-ratelimit-tokens-limit", "96000"),
            ("anthropic-ratelimit-tokens-remaining", "90000"),
            ("anthropic-ratelimit-input-tokens-limit", "80000"),
            ("anthropic-ratelimit-input-tokens-remaining", "76000"),
            // 25% left: the tightest.
            ("anthropic-ratelimit-output-tokens-limit", "16000"),
            ("anthropic-ratelimit-output-tokens-remaining", "4000"),
            ("anthropic-ratelimit-tokens-reset", "2025-08-21T12:40:59Z"),
        ]);
        let q = ProviderQuota::from_headers(&h);
        assert_eq!(q, Some(ProviderQuota { requests: Some((999, 1000)), tokens: Some((4000, 16_000)) }));
    }

    #[test]
    fn a_kind_needs_both_its_limit_and_its_remaining() {
        // Azure sometimes sends only the remaining counts: no share can be computed from them.
        let h = headers(&[("x-ratelimit-remaining-requests", "10"), ("x-ratelimit-remaining-tokens", "900")]);
        assert_eq!(ProviderQuota::from_headers(&h), None);
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "0"),
        ]);
        assert_eq!(
            ProviderQuota::from_headers(&h),
            Some(ProviderQuota { requests: None, tokens: Some((0, 1000)) })
        );
        assert_eq!(ProviderQuota::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn garbage_values_are_ignored() {
        for (limit, remaining) in [
            ("100", "-1"),
            ("100", "ten"),
            ("100", "1.5"),
            ("100", ""),
            ("0", "0"),
            ("-5", "1"),
            ("18446744073709551616", "1"),
            ("1e3", "5"),
        ] {
            let h = headers(&[
                ("x-ratelimit-limit-requests", limit),
                ("x-ratelimit-remaining-requests", remaining),
            ]);
            assert_eq!(ProviderQuota::from_headers(&h), None, "limit {limit:?}, remaining {remaining:?}");
        }
        // Not UTF-8 (opaque bytes) is ignored too.
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", http::HeaderValue::from_bytes(b"\xff1").unwrap());
        h.insert("x-ratelimit-remaining-requests", http::HeaderValue::from_static("1"));
        assert_eq!(ProviderQuota::from_headers(&h), None);
        // Padding is fine; a remaining above the limit is cut to it.
        let h =
            headers(&[("x-ratelimit-limit-requests", " 100 "), ("x-ratelimit-remaining-requests", "250")]);
        assert_eq!(ProviderQuota::from_headers(&h).and_then(|q| q.requests), Some((100, 100)));
    }

    #[test]
    fn both_families_at_once_keep_the_tighter() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "90"),
            ("anthropic-ratelimit-requests-limit", "10"),
            ("anthropic-ratelimit-requests-remaining", "5"),
        ]);
        assert_eq!(ProviderQuota::from_headers(&h).and_then(|q| q.requests), Some((5, 10)));
        assert_eq!(tighter((u64::MAX, u64::MAX), (u64::MAX - 1, u64::MAX)), (u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn the_cell_is_shared_by_clones_and_keeps_a_reading_until_taken() {
        let cell = QuotaCell::default();
        let router = cell.clone();
        cell.observe(&HeaderMap::new());
        assert_eq!(router.take(), None);
        cell.observe(&headers(&[
            ("x-ratelimit-limit-requests", "10"),
            ("x-ratelimit-remaining-requests", "0"),
        ]));
        cell.observe(&headers(&[("server", "nginx")]));
        assert_eq!(router.take(), Some(ProviderQuota { requests: Some((0, 10)), tokens: None }));
        assert_eq!(router.take(), None);
    }
}
