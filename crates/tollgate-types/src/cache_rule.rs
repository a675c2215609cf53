//! How the response cache treats requests, as set at one level: the configuration file (for
//! every request, or one model alias), a tenant, a project or an API key. Unset fields inherit;
//! `tollgate_core::cache::policy` resolves the levels into one request's policy.
//!
//! Stored as JSON (tenants: inside their policy; projects and keys: a column of their own), so a
//! new field is added with a serde default and old rows keep decoding.

use serde::{Deserialize, Serialize};

/// The cache setting of one level. The default (every field unset) inherits everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRule {
    /// What requests that send no `x-tollgate-cache` header do. The most specific level that
    /// sets it wins (key, then project, tenant, alias, file default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CacheRuleMode>,
    /// The most any request may do, whatever its header asks. Every level's `allow` applies
    /// (the strictest wins): a tenant set to `none` is never cached, whatever its keys say, and
    /// a low-trust key set to `read-only` cannot write (poison) the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<CacheAllow>,
    /// How long stored answers live, in seconds. The most specific level that sets it wins;
    /// the file's `cache.max_ttl` caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

impl CacheRule {
    /// True when the rule sets nothing (it is left out of stored JSON).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A default cache mode: what a request without an `x-tollgate-cache` header does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheRuleMode {
    /// Answer from the cache when possible, and store new answers.
    On,
    /// Neither (the default of the default configuration).
    Off,
    /// Answer from the cache, never store.
    ReadOnly,
    /// Store answers, never answer from the cache (warming).
    WriteOnly,
}

impl CacheRuleMode {
    /// `(read, write)`.
    pub const fn flags(self) -> (bool, bool) {
        match self {
            Self::On => (true, true),
            Self::Off => (false, false),
            Self::ReadOnly => (true, false),
            Self::WriteOnly => (false, true),
        }
    }
}

/// A ceiling on what requests may do with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheAllow {
    /// Reading and writing (no restriction).
    ReadWrite,
    /// Reading only: such requests never store answers.
    ReadOnly,
    /// Nothing: the cache is never consulted.
    None,
}

impl CacheAllow {
    /// `(may_read, may_write)`.
    pub const fn flags(self) -> (bool, bool) {
        match self {
            Self::ReadWrite => (true, true),
            Self::ReadOnly => (true, false),
            Self::None => (false, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_kebab_case_and_leaves_out_unset_fields() {
        let rule: CacheRule =
            serde_json::from_str(r#"{"mode":"read-only","allow":"read-write","ttl_seconds":60}"#).unwrap();
        assert_eq!(
            rule,
            CacheRule {
                mode: Some(CacheRuleMode::ReadOnly),
                allow: Some(CacheAllow::ReadWrite),
                ttl_seconds: Some(60)
            }
        );
        assert_eq!(serde_json::to_string(&CacheRule::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<CacheRule>("{}").unwrap().is_empty());
        assert!(serde_json::from_str::<CacheRule>(r#"{"mode":"sometimes"}"#).is_err());
    }
}
