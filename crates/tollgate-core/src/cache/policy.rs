//! The cache mode of one request: the configured [`CachePolicy`] (per tenant / project / key /
//! alias, resolved by the caller) with the request's `x-tollgate-cache` and `Cache-Control`
//! headers applied on top. Runs in the pipeline's `cache` stage, before the lookup.
//!
//! # `x-tollgate-cache` grammar
//!
//! ```text
//! header    = directive *( (";" / ",") directive )     ; whitespace around items is ignored
//! directive = "on" / "off" / "read-only" / "write-only" / "ttl=" duration
//!           / "semantic=" ( "on" / "off" )
//! duration  = 1*DIGIT [ "s" / "m" / "h" / "d" ]         ; no unit = seconds; at least 1s
//! ```
//!
//! Case-insensitive; at most one mode, one `ttl` and one `semantic` (across all header lines,
//! which are read as one list); `ttl=` alone keeps the configured mode and only sets the TTL;
//! `semantic=` turns matching by meaning on or off for the request (it needs a configured
//! semantic cache, and it only changes how entries match: the mode still decides whether the
//! cache is read or written). Examples: `on`, `read-only`, `ttl=300`, `on; ttl=10m`,
//! `semantic=off`. Anything else is a [`CacheHeaderError`] (a 400).
//!
//! `Cache-Control` (standard, so never an error): `no-cache` → do not read (may write),
//! `no-store` → do not write; other directives are ignored.
//!
//! The configured policy is a ceiling: a header can turn on only what the policy allows (a
//! read-only key asking `on` reads but still does not write), and a TTL above `max_ttl` is cut
//! to it.

use std::time::Duration;

use http::HeaderMap;
use tollgate_types::cache_rule::CacheRule;

/// The header carrying the per-request cache directive (and, on answers, the cache outcome).
pub const CACHE_HEADER: &str = "x-tollgate-cache";

/// What the cache may do for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMode {
    /// Look the request up before routing.
    pub read: bool,
    /// Store the answer when the request settles successfully.
    pub write: bool,
    /// How long a stored answer lives.
    pub ttl: Duration,
    /// Also match by meaning (the semantic cache) on an exact miss, and store there.
    pub semantic: bool,
}

impl CacheMode {
    /// Neither read nor write.
    pub const fn off(ttl: Duration) -> Self {
        Self { read: false, write: false, ttl, semantic: false }
    }

    /// True when the cache is not consulted at all (the answer says `bypass`).
    pub const fn is_bypass(&self) -> bool {
        !self.read && !self.write
    }
}

/// The configured cache policy of a request (already resolved across tenant, project, key and
/// alias by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// The mode of a request that sends no cache header.
    pub default: CacheMode,
    /// Whether a request may read at all (a header cannot turn reading on past this).
    pub may_read: bool,
    /// Whether a request may write at all (false for low-trust keys, so they cannot poison the
    /// cache).
    pub may_write: bool,
    /// The longest TTL a header may ask for.
    pub max_ttl: Duration,
}

impl CachePolicy {
    /// The policy the configured rules give, `rules` ordered from least to most specific (the
    /// file's default, the alias, the tenant, the project, the key): the most specific `mode`
    /// and `ttl_seconds` win; every `allow` applies. `default_ttl` is the TTL when no rule sets
    /// one; every TTL is capped at `max_ttl`.
    pub fn from_rules(rules: &[&CacheRule], default_ttl: Duration, max_ttl: Duration) -> Self {
        let (mut read, mut write) = (false, false);
        let (mut may_read, mut may_write) = (true, true);
        let mut ttl = default_ttl;
        let mut semantic = false;
        for rule in rules {
            if let Some(s) = rule.semantic {
                semantic = s;
            }
            if let Some(mode) = rule.mode {
                (read, write) = mode.flags();
            }
            if let Some(allow) = rule.allow {
                let (r, w) = allow.flags();
                may_read &= r;
                may_write &= w;
            }
            if let Some(secs) = rule.ttl_seconds {
                ttl = Duration::from_secs(secs);
            }
        }
        let ttl = ttl.min(max_ttl);
        Self { default: CacheMode { read, write, ttl, semantic }, may_read, may_write, max_ttl }
    }

    /// The request's mode: header directives over the default, then `Cache-Control`, then the
    /// policy's ceiling. Errors name the malformed header.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<CacheMode, CacheHeaderError> {
        Ok(self.apply(&CacheRequest::from_headers(headers)?))
    }

    /// The mode of a request that sent `request` (see [`Self::resolve`]).
    pub fn apply(&self, request: &CacheRequest) -> CacheMode {
        let mut mode = self.default;
        if let Some(m) = request.directive.mode {
            (mode.read, mode.write) = m.flags();
        }
        if let Some(ttl) = request.directive.ttl {
            mode.ttl = ttl;
        }
        if let Some(semantic) = request.directive.semantic {
            mode.semantic = semantic;
        }
        mode.read &= !request.control.no_cache;
        mode.write &= !request.control.no_store;
        mode.read &= self.may_read;
        mode.write &= self.may_write;
        mode.ttl = mode.ttl.min(self.max_ttl);
        if mode.ttl.is_zero() {
            mode.write = false;
        }
        mode
    }
}

/// What a request's headers say about the cache: its `x-tollgate-cache` directive and its
/// `Cache-Control`. Parsed by the ingress (a malformed `x-tollgate-cache` is a 400 there), applied
/// by the pipeline once it knows the configured policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheRequest {
    pub directive: CacheDirective,
    pub control: CacheControl,
}

impl CacheRequest {
    /// Reads both headers; only `x-tollgate-cache` can be malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, CacheHeaderError> {
        let directive = parse_header_values(headers.get_all(CACHE_HEADER).iter().map(|v| v.to_str()))?;
        let mut control = CacheControl::default();
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            // A Cache-Control we cannot read is not ours to reject; ignore it.
            let Ok(value) = value.to_str() else { continue };
            let cc = parse_cache_control(value);
            control.no_cache |= cc.no_cache;
            control.no_store |= cc.no_store;
        }
        Ok(Self { directive, control })
    }
}

/// A mode named in the `x-tollgate-cache` header: the same four modes a configured rule sets.
pub use tollgate_types::cache_rule::CacheRuleMode as HeaderMode;

/// A parsed `x-tollgate-cache` header: what it set, each part optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirective {
    pub mode: Option<HeaderMode>,
    pub ttl: Option<Duration>,
    pub semantic: Option<bool>,
}

/// A malformed `x-tollgate-cache` header; the message names the header and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheHeaderError {
    #[error("header `x-tollgate-cache` is not valid text")]
    NotText,
    #[error(
        "header `x-tollgate-cache`: unknown directive `{0}` (expected on, off, read-only, write-only, ttl=<duration> or semantic=on|off)"
    )]
    UnknownDirective(String),
    #[error(
        "header `x-tollgate-cache`: invalid ttl `{0}` (expected a whole number of s, m, h or d, at least 1s, e.g. ttl=300 or ttl=5m)"
    )]
    InvalidTtl(String),
    #[error("header `x-tollgate-cache`: more than one {0} given")]
    Repeated(&'static str),
    #[error("header `x-tollgate-cache` is empty")]
    Empty,
}

/// Parses one `x-tollgate-cache` value (see the module docs for the grammar).
pub fn parse_cache_header(value: &str) -> Result<CacheDirective, CacheHeaderError> {
    parse_header_values(std::iter::once(Ok::<_, CacheHeaderError>(value)))
}

fn parse_header_values<'a, E>(
    values: impl Iterator<Item = Result<&'a str, E>>,
) -> Result<CacheDirective, CacheHeaderError> {
    let mut out = CacheDirective::default();
    let mut any_value = false;
    for value in values {
        let value = value.map_err(|_| CacheHeaderError::NotText)?;
        any_value = true;
        for item in value.split([';', ',']) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let lower = item.to_ascii_lowercase();
            if let Some(ttl) = lower.strip_prefix("ttl") {
                let ttl = ttl
                    .trim_start()
                    .strip_prefix('=')
                    .ok_or_else(|| CacheHeaderError::UnknownDirective(item.to_owned()))?;
                let ttl = parse_ttl(ttl.trim())
                    .ok_or_else(|| CacheHeaderError::InvalidTtl(ttl.trim().to_owned()))?;
                if out.ttl.replace(ttl).is_some() {
                    return Err(CacheHeaderError::Repeated("ttl"));
                }
                continue;
            }
            if let Some(value) = lower.strip_prefix("semantic") {
                let semantic = match value.trim_start().strip_prefix('=').map(str::trim) {
                    Some("on") => true,
                    Some("off") => false,
                    _ => return Err(CacheHeaderError::UnknownDirective(item.to_owned())),
                };
                if out.semantic.replace(semantic).is_some() {
                    return Err(CacheHeaderError::Repeated("semantic"));
                }
                continue;
            }
            let mode = match lower.as_str() {
                "on" => HeaderMode::On,
                "off" => HeaderMode::Off,
                "read-only" => HeaderMode::ReadOnly,
                "write-only" => HeaderMode::WriteOnly,
                _ => return Err(CacheHeaderError::UnknownDirective(item.to_owned())),
            };
            if out.mode.replace(mode).is_some() {
                return Err(CacheHeaderError::Repeated("mode"));
            }
        }
    }
    if any_value && out == CacheDirective::default() {
        return Err(CacheHeaderError::Empty);
    }
    Ok(out)
}

/// `300`, `300s`, `5m`, `2h`, `1d`; at least one second; `None` when malformed.
fn parse_ttl(s: &str) -> Option<Duration> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The cache-relevant directives of a `Cache-Control` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-cache`: do not answer from the cache.
    pub no_cache: bool,
    /// `no-store`: do not store the answer.
    pub no_store: bool,
}

/// Reads `no-cache` / `no-store` from a `Cache-Control` value, ignoring every other directive.
pub fn parse_cache_control(value: &str) -> CacheControl {
    let mut cc = CacheControl::default();
    for item in value.split(',') {
        // `no-cache="field"` is a response-only form; its name is what counts.
        let name = item.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("no-cache") {
            cc.no_cache = true;
        } else if name.eq_ignore_ascii_case("no-store") {
            cc.no_store = true;
        }
    }
    cc
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MIN: Duration = Duration::from_secs(60);

    fn policy(read: bool, write: bool) -> CachePolicy {
        CachePolicy {
            default: CacheMode { read, write, ttl: 5 * MIN, semantic: false },
            may_read: true,
            may_write: true,
            max_ttl: 60 * MIN,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn mode(read: bool, write: bool, ttl: Duration) -> CacheMode {
        CacheMode { read, write, ttl, semantic: false }
    }

    #[test]
    fn header_grammar() {
        let d = |mode, ttl| CacheDirective { mode, ttl, semantic: None };
        assert_eq!(parse_cache_header("on"), Ok(d(Some(HeaderMode::On), None)));
        assert_eq!(parse_cache_header(" OFF "), Ok(d(Some(HeaderMode::Off), None)));
        assert_eq!(parse_cache_header("read-only"), Ok(d(Some(HeaderMode::ReadOnly), None)));
        assert_eq!(parse_cache_header("write-only"), Ok(d(Some(HeaderMode::WriteOnly), None)));
        assert_eq!(parse_cache_header("ttl=300"), Ok(d(None, Some(Duration::from_secs(300)))));
        assert_eq!(parse_cache_header("ttl = 45s"), Ok(d(None, Some(Duration::from_secs(45)))));
        assert_eq!(parse_cache_header("on; ttl=10m"), Ok(d(Some(HeaderMode::On), Some(10 * MIN))));
        assert_eq!(
            parse_cache_header("ttl=2h, read-only"),
            Ok(d(Some(HeaderMode::ReadOnly), Some(120 * MIN)))
        );
        assert_eq!(parse_cache_header("ttl=1d;"), Ok(d(None, Some(Duration::from_secs(86_400)))));
    }

    #[test]
    fn malformed_headers_are_typed_errors_naming_the_header() {
        for (value, want) in [
            ("yes", CacheHeaderError::UnknownDirective("yes".into())),
            ("readonly", CacheHeaderError::UnknownDirective("readonly".into())),
            ("ttl", CacheHeaderError::UnknownDirective("ttl".into())),
            ("ttl=", CacheHeaderError::InvalidTtl(String::new())),
            ("ttl=0", CacheHeaderError::InvalidTtl("0".into())),
            ("ttl=-5", CacheHeaderError::InvalidTtl("-5".into())),
            ("ttl=5w", CacheHeaderError::InvalidTtl("5w".into())),
            ("ttl=1.5m", CacheHeaderError::InvalidTtl("1.5m".into())),
            ("ttl=99999999999999999999", CacheHeaderError::InvalidTtl("99999999999999999999".into())),
            ("on; off", CacheHeaderError::Repeated("mode")),
            ("ttl=1; ttl=2", CacheHeaderError::Repeated("ttl")),
            (" ; ", CacheHeaderError::Empty),
            ("semantic", CacheHeaderError::UnknownDirective("semantic".into())),
            ("semantic=maybe", CacheHeaderError::UnknownDirective("semantic=maybe".into())),
            ("semantic=on, semantic=off", CacheHeaderError::Repeated("semantic")),
        ] {
            let err = parse_cache_header(value).unwrap_err();
            assert_eq!(err, want, "{value:?}");
            assert!(err.to_string().contains("x-tollgate-cache"), "{err}");
        }
        let mut h = HeaderMap::new();
        h.insert(CACHE_HEADER, HeaderValue::from_bytes(b"on\xff").unwrap());
        assert_eq!(policy(true, true).resolve(&h), Err(CacheHeaderError::NotText));
    }

    #[test]
    fn semantic_comes_from_the_most_specific_rule_and_the_header() {
        let on = CacheRule { semantic: Some(true), ..CacheRule::default() };
        let off = CacheRule { semantic: Some(false), ..CacheRule::default() };
        let unset = CacheRule::default();
        let p = |rules: &[&CacheRule]| CachePolicy::from_rules(rules, MIN, 60 * MIN);
        assert!(!p(&[&unset, &unset]).default.semantic, "off unless a level turns it on");
        assert!(p(&[&on, &unset]).default.semantic);
        assert!(!p(&[&on, &off]).default.semantic, "the more specific level wins");
        assert!(p(&[&off, &on]).default.semantic);
        let policy = p(&[&on]);
        assert!(!policy.resolve(&headers(&[(CACHE_HEADER, "on; semantic=off")])).unwrap().semantic);
        let policy = p(&[&off]);
        let m = policy.resolve(&headers(&[(CACHE_HEADER, "Semantic = ON")])).unwrap();
        assert!(m.semantic && !m.read, "semantic only changes how entries match, not the mode");
    }

    #[test]
    fn no_header_gives_the_default() {
        assert_eq!(policy(true, true).resolve(&HeaderMap::new()), Ok(mode(true, true, 5 * MIN)));
        assert_eq!(policy(false, false).resolve(&HeaderMap::new()), Ok(mode(false, false, 5 * MIN)));
    }

    #[test]
    fn header_overrides_the_default_mode_and_ttl() {
        let p = policy(false, false);
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "on")])), Ok(mode(true, true, 5 * MIN)));
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "read-only")])), Ok(mode(true, false, 5 * MIN)));
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "write-only")])), Ok(mode(false, true, 5 * MIN)));
        let p = policy(true, true);
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "off")])), Ok(mode(false, false, 5 * MIN)));
        assert!(p.resolve(&headers(&[(CACHE_HEADER, "off")])).unwrap().is_bypass());
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "ttl=10m")])), Ok(mode(true, true, 10 * MIN)));
        // Two header lines read as one list.
        let h = headers(&[(CACHE_HEADER, "read-only"), (CACHE_HEADER, "ttl=30")]);
        assert_eq!(p.resolve(&h), Ok(mode(true, false, Duration::from_secs(30))));
    }

    #[test]
    fn cache_control_no_cache_and_no_store() {
        let p = policy(true, true);
        let r = |v: &'static str| p.resolve(&headers(&[("cache-control", v)])).unwrap();
        assert_eq!(r("no-cache"), mode(false, true, 5 * MIN));
        assert_eq!(r("No-Store"), mode(true, false, 5 * MIN));
        assert_eq!(r("no-cache, no-store"), mode(false, false, 5 * MIN));
        assert_eq!(r("max-age=0, private"), mode(true, true, 5 * MIN));
        // Cache-Control wins over an x-tollgate-cache `on`.
        let h = headers(&[(CACHE_HEADER, "on"), ("cache-control", "no-store")]);
        assert_eq!(policy(false, false).resolve(&h), Ok(mode(true, false, 5 * MIN)));
        assert_eq!(
            parse_cache_control("no-cache=\"set-cookie\""),
            CacheControl { no_cache: true, no_store: false }
        );
    }

    #[test]
    fn rules_resolve_most_specific_mode_and_ttl_strictest_allow() {
        use tollgate_types::cache_rule::{CacheAllow, CacheRuleMode};
        let rule =
            |mode, allow, ttl: Option<u64>| CacheRule { mode, allow, ttl_seconds: ttl, semantic: None };
        let (hour, day) = (60 * MIN, 24 * 60 * MIN);
        // Nothing set: off, everything allowed, the default TTL.
        assert_eq!(
            CachePolicy::from_rules(&[], hour, day),
            CachePolicy { default: mode(false, false, hour), may_read: true, may_write: true, max_ttl: day }
        );
        let file = rule(Some(CacheRuleMode::Off), None, Some(600));
        let alias = rule(Some(CacheRuleMode::On), None, None);
        let tenant = rule(None, Some(CacheAllow::ReadWrite), Some(120));
        let project = CacheRule::default();
        let key = rule(Some(CacheRuleMode::ReadOnly), Some(CacheAllow::ReadOnly), None);
        let p = CachePolicy::from_rules(&[&file, &alias, &tenant, &project], hour, day);
        assert_eq!(p.default, mode(true, true, Duration::from_secs(120)));
        let p = CachePolicy::from_rules(&[&file, &alias, &tenant, &project, &key], hour, day);
        assert_eq!(p.default, mode(true, false, Duration::from_secs(120)));
        assert!(p.may_read && !p.may_write);
        // A ceiling anywhere holds, even under a more specific `read-write`.
        let none = rule(None, Some(CacheAllow::None), None);
        let p = CachePolicy::from_rules(&[&none, &alias, &tenant], hour, day);
        assert!(!p.may_read && !p.may_write);
        assert!(p.apply(&CacheRequest::default()).is_bypass());
        // A rule's TTL above the maximum is cut to it.
        let long = rule(None, None, Some(7 * 86_400));
        assert_eq!(CachePolicy::from_rules(&[&long], hour, day).default.ttl, day);
    }

    #[test]
    fn the_policy_ceiling_beats_the_header() {
        let read_only_key = CachePolicy { may_write: false, ..policy(true, false) };
        assert_eq!(read_only_key.resolve(&headers(&[(CACHE_HEADER, "on")])), Ok(mode(true, false, 5 * MIN)));
        assert_eq!(
            read_only_key.resolve(&headers(&[(CACHE_HEADER, "write-only")])),
            Ok(mode(false, false, 5 * MIN))
        );
        let no_read = CachePolicy { may_read: false, ..policy(false, true) };
        assert_eq!(no_read.resolve(&headers(&[(CACHE_HEADER, "on")])), Ok(mode(false, true, 5 * MIN)));
        // A TTL above the maximum is cut to it.
        let p = policy(true, true);
        assert_eq!(p.resolve(&headers(&[(CACHE_HEADER, "ttl=7d")])), Ok(mode(true, true, 60 * MIN)));
        // A zero maximum TTL means nothing can be written.
        let zero = CachePolicy { max_ttl: Duration::ZERO, ..p };
        assert_eq!(zero.resolve(&HeaderMap::new()), Ok(mode(true, false, Duration::ZERO)));
    }
}
