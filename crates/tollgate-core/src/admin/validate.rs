//! Field checks of the admin API, done before the store is called so every error names the
//! field (`param`) and nothing is written. The store re-checks its own invariants; these are
//! the API's limits, which may be tighter.

use time::OffsetDateTime;
use tollgate_types::GatewayError;
use tollgate_types::JsonMap;
use tollgate_types::cache_rule::CacheRule;
use tollgate_types::limits::{BudgetSpec, LimitPolicy, PriceAmount, PriceEntry, PricingPolicy, RateLimits};
use tollgate_types::tenancy::TenantPolicy;

use crate::metering::Price;

/// Longest name of any resource, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest key metadata, serialized as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most entries in a key's `allowed_models`.
pub const MAX_ALLOWED_MODELS: usize = 100;
/// Longest model alias in `allowed_models`, in characters.
pub const MAX_MODEL_CHARS: usize = 200;
/// Most entries in a tenant's or a key's `allowed_tags`.
pub const MAX_ALLOWED_TAGS: usize = 32;
/// Most per-model entries in a limits policy.
pub const MAX_LIMIT_MODELS: usize = 100;
/// Most price entries in a tenant's pricing.
pub const MAX_PRICE_ENTRIES: usize = 1000;
/// Largest markup, in basis points (100 000 = +1000%).
pub const MAX_MARKUP_BPS: u32 = 100_000;
/// Longest provider secret accepted, in characters (real ones are far shorter).
pub const MAX_SECRET_CHARS: usize = 8 * 1024;

/// A name: 1..=200 characters once trimmed, no control characters. Returns it trimmed.
pub fn name(field: &str, value: &str) -> Result<String, GatewayError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(GatewayError::invalid_field(field, "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(GatewayError::invalid_field(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(GatewayError::invalid_field(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

pub fn optional_name(field: &str, value: Option<String>) -> Result<Option<String>, GatewayError> {
    value.map(|v| name(field, &v)).transpose()
}

/// A tenant policy: its allowed tags as [`allowed_tags`] checks them, its cache rule as
/// [`cache_rule`] does.
pub fn policy(mut policy: TenantPolicy) -> Result<TenantPolicy, GatewayError> {
    policy.allowed_tags = allowed_tags("policy.allowed_tags", policy.allowed_tags)?;
    policy.cache = cache_rule("policy.cache", policy.cache)?;
    Ok(policy)
}

/// Longest cache TTL a rule may set, in seconds (a year, as the cache stores cap it).
pub const MAX_CACHE_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// A cache rule: a TTL, when set, from 1 second to a year. (Zero would mean "never store",
/// which `allow: read-only` says plainly.)
pub fn cache_rule(field: &str, rule: CacheRule) -> Result<CacheRule, GatewayError> {
    if let Some(ttl) = rule.ttl_seconds
        && !(1..=MAX_CACHE_TTL_SECONDS).contains(&ttl)
    {
        return Err(GatewayError::invalid_field(
            &format!("{field}.ttl_seconds"),
            format!(
                "must be from 1 to {MAX_CACHE_TTL_SECONDS} (a year); to stop storing answers set allow: read-only"
            ),
        ));
    }
    Ok(rule)
}

/// Deployment tags a tenant or a key is restricted to (empty: no restriction): at most 32,
/// each in the tag alphabet of the config. Returned sorted and without duplicates. `field`
/// names the list (`policy.allowed_tags`, `allowed_tags`); a bad tag's error names its index.
pub fn allowed_tags(field: &str, mut tags: Vec<String>) -> Result<Vec<String>, GatewayError> {
    if tags.len() > MAX_ALLOWED_TAGS {
        return Err(GatewayError::invalid_field(
            field,
            format!("at most {MAX_ALLOWED_TAGS} tags (got {})", tags.len()),
        ));
    }
    if let Some((i, bad)) = tags.iter().enumerate().find(|(_, t)| !crate::config::valid_tag(t)) {
        return Err(GatewayError::invalid_field(
            &format!("{field}[{i}]"),
            format!("{bad:?}: use 1-64 letters, digits, '-', '_', '.' or ':'"),
        ));
    }
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// Key metadata: at most 16 KiB as JSON.
pub fn metadata(value: &JsonMap) -> Result<(), GatewayError> {
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(GatewayError::invalid_field(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})"),
        ));
    }
    Ok(())
}

/// Allowed models: 1..=100 non-empty aliases (`None` allows every model).
pub fn allowed_models(value: Option<Vec<String>>) -> Result<Option<Vec<String>>, GatewayError> {
    let Some(models) = value else { return Ok(None) };
    if models.is_empty() {
        return Err(GatewayError::invalid_field(
            "allowed_models",
            "must list at least one model (omit it or send null to allow every model)",
        ));
    }
    if models.len() > MAX_ALLOWED_MODELS {
        return Err(GatewayError::invalid_field(
            "allowed_models",
            format!("at most {MAX_ALLOWED_MODELS} entries (got {})", models.len()),
        ));
    }
    models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("allowed_models[{i}]");
            let trimmed = m.trim();
            if trimmed.is_empty()
                || trimmed.chars().count() > MAX_MODEL_CHARS
                || trimmed.chars().any(char::is_control)
            {
                return Err(GatewayError::invalid_field(
                    &field,
                    format!("must be a model alias of 1-{MAX_MODEL_CHARS} characters"),
                ));
            }
            Ok(trimmed.to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An expiry must lie in the future.
pub fn expires_at(value: Option<OffsetDateTime>) -> Result<Option<OffsetDateTime>, GatewayError> {
    match value {
        Some(t) if t <= OffsetDateTime::now_utc() => {
            Err(GatewayError::invalid_field("expires_at", "must be in the future"))
        }
        other => Ok(other),
    }
}

/// A provider secret: 1..=8192 characters, no control characters (a pasted newline would
/// break the `Authorization` header later).
pub fn secret(value: &str) -> Result<(), GatewayError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_SECRET_CHARS || value.chars().any(char::is_control) {
        return Err(GatewayError::invalid_field(
            "secret",
            format!("must be 1-{MAX_SECRET_CHARS} characters without control characters or line breaks"),
        ));
    }
    Ok(())
}

/// `prefix.field`, or `field` at the top level (a PUT body is the policy itself; a POST key or
/// project body holds it under `limits`).
fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_owned() } else { format!("{prefix}.{field}") }
}

/// A limits policy: every limit at least 1, at most 100 model entries with sensible names, at
/// most one budget per period, caps above zero, alert thresholds within 1..=100. Returns it
/// normalised (alert thresholds sorted, duplicates dropped). `prefix` is where the policy sits in
/// the request body (`""` or `limits`), so each error names the field as the client wrote it.
pub fn limits(prefix: &str, policy: LimitPolicy) -> Result<LimitPolicy, GatewayError> {
    rate(&path(prefix, "rate"), &policy.rate)?;
    if policy.models.len() > MAX_LIMIT_MODELS {
        return Err(GatewayError::invalid_field(
            &path(prefix, "models"),
            format!("at most {MAX_LIMIT_MODELS} models (got {})", policy.models.len()),
        ));
    }
    for (model, limits) in &policy.models {
        let field = path(prefix, &format!("models.{model}"));
        if model.is_empty()
            || model.trim() != model
            || model.chars().count() > MAX_MODEL_CHARS
            || model.chars().any(char::is_control)
        {
            return Err(GatewayError::invalid_field(
                &field,
                format!(
                    "must be a model alias of 1-{MAX_MODEL_CHARS} characters without surrounding spaces or \
                     control characters"
                ),
            ));
        }
        rate(&field, limits)?;
    }
    let mut budgets: Vec<BudgetSpec> = Vec::with_capacity(policy.budgets.len());
    for (i, budget) in policy.budgets.into_iter().enumerate() {
        let field = |name: &str| path(prefix, &format!("budgets[{i}].{name}"));
        if budgets.iter().any(|b| b.period == budget.period) {
            return Err(GatewayError::invalid_field(
                &field("period"),
                "at most one budget per period; this period already has one",
            ));
        }
        if budget.limit_usd.nanodollars == 0 {
            return Err(GatewayError::invalid_field(
                &field("limit_usd"),
                "must be more than 0 (a decimal string of USD such as \"25.00\")",
            ));
        }
        let alert_at_percent = match budget.alert_at_percent {
            None => None,
            Some(mut percents) => {
                if let Some(bad) = percents.iter().find(|p| !(1..=100).contains(*p)) {
                    return Err(GatewayError::invalid_field(
                        &field("alert_at_percent"),
                        format!("each value must be between 1 and 100 (got {bad})"),
                    ));
                }
                percents.sort_unstable();
                percents.dedup();
                Some(percents)
            }
        };
        budgets.push(BudgetSpec { alert_at_percent, ..budget });
    }
    Ok(LimitPolicy { rate: policy.rate, models: policy.models, budgets })
}

/// Each limit that is set is at least 1 (absent means no limit; 0 would refuse everything).
/// Every rate limit at least 1 (`prefix` names where the limits sit, for the error).
pub fn rate(prefix: &str, limits: &RateLimits) -> Result<(), GatewayError> {
    let fields = [("rpm", limits.rpm), ("tpm", limits.tpm), ("max_concurrent", limits.max_concurrent)];
    for (name, value) in fields {
        if value == Some(0) {
            return Err(GatewayError::invalid_field(
                &path(prefix, name),
                "must be at least 1; remove the field for no limit",
            ));
        }
    }
    Ok(())
}

/// A tenant's pricing: markup at most 100 000 basis points, at most 1000 price entries, each of
/// which must be a valid price (the error names the entry and what is wrong with it). Returns it
/// with every amount as an exact decimal string.
pub fn pricing(policy: PricingPolicy) -> Result<PricingPolicy, GatewayError> {
    if policy.markup_bps > MAX_MARKUP_BPS {
        return Err(GatewayError::invalid_field(
            "markup_bps",
            format!("must be at most {MAX_MARKUP_BPS} (+1000%) (got {})", policy.markup_bps),
        ));
    }
    if policy.prices.len() > MAX_PRICE_ENTRIES {
        return Err(GatewayError::invalid_field(
            "prices",
            format!("at most {MAX_PRICE_ENTRIES} entries (got {})", policy.prices.len()),
        ));
    }
    for (i, entry) in policy.prices.iter().enumerate() {
        Price::from_entry(entry).map_err(|e| GatewayError::invalid_field(&format!("prices[{i}]"), e))?;
    }
    let text = |a: PriceAmount| PriceAmount::Text(a.as_decimal());
    let prices = policy
        .prices
        .into_iter()
        .map(|e| PriceEntry {
            input: text(e.input),
            output: e.output.map(text),
            cached_input: e.cached_input.map(text),
            cache_write: e.cache_write.map(text),
            reasoning: e.reasoning.map(text),
            ..e
        })
        .collect();
    Ok(PricingPolicy { markup_bps: policy.markup_bps, prices })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  a ").unwrap(), "a");
        assert_eq!(name("name", "").unwrap_err().param.as_deref(), Some("name"));
        assert!(name("name", &"x".repeat(201)).is_err());
        assert!(name("name", "a\nb").is_err());
        assert!(name("name", "'; DROP TABLE tenants; --").is_ok());
    }

    #[test]
    fn models_metadata_expiry_and_secrets_are_checked() {
        assert!(allowed_models(Some(vec![])).is_err());
        assert_eq!(
            allowed_models(Some(vec![" ".into()])).unwrap_err().param.as_deref(),
            Some("allowed_models[0]")
        );
        assert!(allowed_models(Some(vec!["m".into(); 101])).is_err());
        assert_eq!(allowed_models(Some(vec![" m ".into()])).unwrap(), Some(vec!["m".to_owned()]));
        let mut big = JsonMap::new();
        big.insert("k".into(), serde_json::Value::String("x".repeat(MAX_METADATA_BYTES)));
        assert!(metadata(&big).is_err());
        assert!(expires_at(Some(OffsetDateTime::now_utc() - time::Duration::seconds(1))).is_err());
        assert!(expires_at(Some(OffsetDateTime::now_utc() + time::Duration::hours(1))).is_ok());
        assert!(secret("").is_err());
        assert!(secret("sk-abc\n").is_err());
        assert!(secret("sk-abc").is_ok());
    }

    #[test]
    fn tags_are_checked_sorted_and_deduplicated_for_tenants_and_keys() {
        let tags = |v: &[&str]| v.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert_eq!(allowed_tags("allowed_tags", tags(&["us", "eu", "us"])).unwrap(), ["eu", "us"]);
        assert_eq!(allowed_tags("allowed_tags", vec![]).unwrap(), Vec::<String>::new());
        let e = allowed_tags("allowed_tags", tags(&["eu", "e u"])).unwrap_err();
        assert_eq!((e.status(), e.param.as_deref()), (400, Some("allowed_tags[1]")));
        let many: Vec<String> = (0..=MAX_ALLOWED_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(allowed_tags("allowed_tags", many).unwrap_err().param.as_deref(), Some("allowed_tags"));
        // The tenant's policy goes through the same check, under its own field path.
        let ttl = |s| CacheRule { ttl_seconds: Some(s), ..CacheRule::default() };
        assert_eq!(cache_rule("cache", ttl(60)).unwrap(), ttl(60));
        assert_eq!(cache_rule("cache", CacheRule::default()).unwrap(), CacheRule::default());
        for bad in [0, MAX_CACHE_TTL_SECONDS + 1] {
            let e = cache_rule("cache", ttl(bad)).unwrap_err();
            assert_eq!((e.status(), e.param.as_deref()), (400, Some("cache.ttl_seconds")));
        }
        let bad = TenantPolicy { cache: ttl(0), ..TenantPolicy::default() };
        assert_eq!(super::policy(bad).unwrap_err().param.as_deref(), Some("policy.cache.ttl_seconds"));
        let bad = TenantPolicy { allowed_tags: tags(&[""]), ..TenantPolicy::default() };
        assert_eq!(super::policy(bad).unwrap_err().param.as_deref(), Some("policy.allowed_tags[0]"));
    }

    fn policy(json: serde_json::Value) -> LimitPolicy {
        serde_json::from_value(json).unwrap()
    }

    fn param(e: GatewayError) -> (u16, String, String) {
        (e.status(), e.param.clone().unwrap_or_default(), e.message)
    }

    #[test]
    fn limits_name_the_field_at_fault() {
        let zero = |json| param(limits("", policy(json)).unwrap_err());
        let (status, field, message) = zero(serde_json::json!({"models": {"gpt-4o": {"rpm": 0}}}));
        assert_eq!((status, field.as_str()), (400, "models.gpt-4o.rpm"));
        assert!(message.contains("must be at least 1; remove the field for no limit"), "{message}");
        assert_eq!(zero(serde_json::json!({"rate": {"tpm": 0}})).1, "rate.tpm");
        assert_eq!(zero(serde_json::json!({"rate": {"max_concurrent": 0}})).1, "rate.max_concurrent");
        let e = limits("limits", policy(serde_json::json!({"rate": {"rpm": 0}}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limits.rate.rpm"));

        let two_months = serde_json::json!({"budgets": [
            {"period": "month", "limit_usd": "1"}, {"period": "day", "limit_usd": "1"},
            {"period": "month", "limit_usd": "2"}]});
        assert_eq!(zero(two_months).1, "budgets[2].period");
        assert_eq!(
            zero(serde_json::json!({"budgets": [{"period": "day", "limit_usd": "0.0"}]})).1,
            "budgets[0].limit_usd"
        );
        for bad in [0, 101] {
            let json = serde_json::json!({"budgets": [{"period": "day", "limit_usd": "1", "alert_at_percent": [50, bad]}]});
            assert_eq!(zero(json).1, "budgets[0].alert_at_percent");
        }
        for name in ["", " gpt", "a\nb"] {
            let json = serde_json::json!({"models": {name: {"rpm": 1}}});
            assert_eq!(zero(json).1, format!("models.{name}"));
        }
        let long = "m".repeat(201);
        assert_eq!(
            zero(serde_json::json!({"models": {long.clone(): {"rpm": 1}}})).1,
            format!("models.{long}")
        );
        let many: serde_json::Map<String, serde_json::Value> =
            (0..101).map(|i| (format!("m{i}"), serde_json::json!({"rpm": 1}))).collect();
        assert_eq!(zero(serde_json::json!({"models": many})).1, "models");
    }

    #[test]
    fn limits_are_normalised() {
        let p = limits(
            "",
            policy(serde_json::json!({"rate": {"rpm": 1}, "models": {"m": {"tpm": 5}}, "budgets": [
                {"period": "week", "limit_usd": "0.000000001", "alert_at_percent": [100, 50, 80, 50]},
                {"period": "total", "limit_usd": 3}]})),
        )
        .unwrap();
        assert_eq!(p.budgets[0].alert_at_percent, Some(vec![50, 80, 100]));
        assert_eq!(p.budgets[1].alert_at_percent, None);
        assert_eq!(p.rate.rpm, Some(1));
        assert_eq!(limits("", LimitPolicy::default()).unwrap(), LimitPolicy::default());
    }

    #[test]
    fn pricing_entries_must_parse_and_become_exact_strings() {
        let pricing_of = |json| pricing(serde_json::from_value::<PricingPolicy>(json).unwrap());
        let ok = pricing_of(serde_json::json!({"markup_bps": 100, "prices": [
            {"provider": "openai", "model": "gpt-4o", "effective_from": "2025-01-01", "input": 0.15, "output": 2}]}))
        .unwrap();
        assert_eq!(ok.prices[0].input, PriceAmount::Text("0.15".into()));
        assert_eq!(ok.prices[0].output, Some(PriceAmount::Text("2".into())));

        let e = pricing_of(serde_json::json!({"markup_bps": 100_001})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("markup_bps"));
        let e = pricing_of(serde_json::json!({"prices": [
            {"provider": "openai", "model": "a", "effective_from": "2025-01-01", "input": "1"},
            {"provider": "openai", "model": "b", "effective_from": "2025-13-01", "input": "1"}]}))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prices[1]"));
        assert!(e.message.contains("effective_from"), "{}", e.message);
        let e = pricing_of(serde_json::json!({"prices": [
            {"provider": "openai", "model": "a", "effective_from": "2025-01-01", "input": "0.0000001"}]}))
        .unwrap_err();
        assert!(e.message.contains("input") && e.message.contains("decimals"), "{}", e.message);
        let entry =
            serde_json::json!({"provider": "p", "model": "m", "effective_from": "2025-01-01", "input": "1"});
        let e = pricing_of(serde_json::json!({"prices": vec![entry; 1001]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prices"));
    }
}
